import pytest

from distilens.config import RunConfig, apply_overrides, dump_config, load_config
from distilens.errors import ConfigError


def test_no_file_is_the_default_demo() -> None:
    cfg = load_config(None)
    assert cfg == RunConfig()
    assert cfg.data.source == "builtin:digits"
    assert [l.name for l in cfg.distill.losses] == ["kd", "ce"]


def test_empty_file_is_the_default(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("")
    assert load_config(p) == RunConfig(name="c")  # an unnamed run is named after its config file


def test_overrides_reach_nested_keys_and_list_items() -> None:
    cfg = load_config(
        None,
        ["distill.epochs=5", "student.arch=mlp", "distill.losses[0].temperature=2", "data.image_size=[16, 16]"],
    )
    assert cfg.distill.epochs == 5 and cfg.student.arch == "mlp"
    assert cfg.distill.losses[0].options() == {"temperature": 2}
    assert cfg.distill.losses[1].name == "ce"  # the rest of the default list is kept
    assert cfg.data.image_size == (16, 16)


def test_dump_round_trips(tmp_path) -> None:
    cfg = load_config(None, ["seed=3", "distill.losses[0].temperature=2.5"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize(
    "text, message",
    [
        ("distill:\n  epoch: 5\n", r"unknown key 'distill.epoch' \(did you mean 'epochs'\?\)"),
        ("distill:\n  epochs: five\n", "'distill.epochs': Input should be a valid integer"),
        ("distill:\n  epochs: -1\n", "'distill.epochs': Input should be greater than or equal to 1"),
        ("distill:\n  losses:\n    - {name: kd, weight: 0}\n", "sum to 0"),
        ("name: ../../etc\n", "'name': must be 1-100 letters"),
        ("data: [1, 2\n", "YAML syntax error at line 2"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("teacher: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "YAML syntax error"),
        ("runtime:\n  device: gpu\n", "'runtime.device': must be auto, cpu"),
    ],
)
def test_bad_configs_give_one_line_errors(tmp_path, text: str, message: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.epochs", "expected KEY=VALUE"),
        ("=5", "expected KEY=VALUE"),
        ("distill..epochs=5", "empty part"),
        ("distill.losses[7].temperature=2", r"index \[7\] is out of range"),
        ("distill.epochs=[", "cannot read the value"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_config_file_and_directory(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_apply_overrides_creates_missing_mappings() -> None:
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_a_loss_without_weight_gets_its_own_measured_default(tmp_path) -> None:
    from distilens.distill import build_objectives

    path = tmp_path / "c.yaml"
    path.write_text("distill:\n  losses: [{name: kd}, {name: gradcam_align}]\n")
    cfg = load_config(path)
    assert [loss.weight for loss in cfg.distill.losses] == [None, None]
    again = load_config(None, [f"distill.losses={[l.model_dump(exclude_none=True) for l in cfg.distill.losses]}"])
    assert again.distill.losses[1].weight is None  # dumped and read back, still unset
    specs = [{"name": l.name, **l.options()} for l in cfg.distill.losses]
    assert [o.weight for o in build_objectives(specs)] == [1.0, 0.1]  # GradCAMAlign's default (BENCHMARKS.md)
    path.write_text("distill:\n  losses: [{name: kd, weight: 0}, {name: ce, weight: 0}]\n")
    with pytest.raises(ConfigError, match="sum to 0"):
        load_config(path)


def test_a_run_is_named_after_its_config_file_and_data(tmp_path) -> None:
    """Without a name, runs of different data get different folders (README's examples run one after another)."""
    from distilens.config import load_config

    (tmp_path / "my.yaml").write_text("seed: 1\n")
    (tmp_path / "named.yaml").write_text("name: mine\n")
    assert load_config(None).name == "digits-demo"
    assert load_config(None, ["data.source=csv:loans.csv"]).name == "loans"
    assert load_config(None, ["data.source=imagefolder:photos/"]).name == "photos"
    assert load_config(tmp_path / "my.yaml").name == "my"
    assert load_config(tmp_path / "my.yaml", ["data.source=csv:loans.csv"]).name == "my-loans"
    assert load_config(tmp_path / "named.yaml", ["data.source=csv:loans.csv"]).name == "mine"
    assert load_config(None, ["name=x", "data.source=csv:loans.csv"]).name == "x"
    assert load_config(None, ["data.source=csv:my data (1).csv"]).name == "my-data-1"
