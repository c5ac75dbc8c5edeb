
from distilens.report.build import verdict, write_run_report
from distilens.report.html import render_report


def test_user_text_is_escaped() -> None:
    html = render_report(
        {"dataset": {"name": "<b>x</b>", "num_classes": 2, "n_train": 1, "n_val": 1, "n_test": 1}},
        name="<script>alert(1)</script>", config_yaml="target: '<img src=x onerror=alert(1)>'",
        figures={}, methods=[], checks=[], missing=[], command="distilens run '<script>'",
    )
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "<b>x</b>" not in html


def test_verdict_colours_by_threshold() -> None:
    thresholds = {"max_accuracy_drop": 0.01, "min_agreement": 0.95, "margin": 0.01}
    m = {"teacher": {"accuracy": 0.99}, "student": {"accuracy": 0.985, "agreement": 0.96},
         "baseline": {"accuracy": 0.98, "agreement": 0.95}}
    # accuracy, predictions, then the label-only comparison: without a paired test it is "no gain shown", never green
    assert [c["status"] for c in verdict(m, thresholds)] == ["green", "green", "grey", "grey"]
    assert "no gain shown" in verdict(m, thresholds)[2]["value"]
    m["student"].update(accuracy=0.975, agreement=0.945)  # drop 1.5 points, agreement 94.5%
    assert [c["status"] for c in verdict(m, thresholds)][:2] == ["amber", "amber"]
    m["student"].update(accuracy=0.90, agreement=0.80)
    assert [c["status"] for c in verdict(m, thresholds)][:2] == ["red", "red"]


def test_a_run_that_stopped_early_still_gets_a_report(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text("name: early\n")
    (tmp_path / "history.csv").write_text("model,epoch,lr,loss,ce,train_accuracy,val_accuracy,val_loss,time_s\n"
                                          "teacher,1,0.001,2.0,2.0,0.4,0.5,1.9,1.0\n")
    path = write_run_report(tmp_path)
    html = path.read_text()
    assert "metrics.json" in html and "predictions.safetensors" in html  # said to be missing
    assert "Training" in html and html.count("data:image/png;base64,") == 1
