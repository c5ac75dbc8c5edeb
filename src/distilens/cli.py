"""The ``distilens`` command. It parses, calls the library, and maps errors to exit codes:
0 done, 2 the user's input is wrong (one line on stderr; a full disk is such a case too),
1 a bug (with its traceback), 130 stopped by Ctrl-C, 143 stopped by SIGTERM.
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import DistilensError

app = typer.Typer(
    name="distilens",
    help="Distil a large classifier into a small one, and show with explanations that the small "
    "one still looks where the large one looks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_LISTABLE = ("datasets", "models", "losses", "explainers")
_ALLOW_IMPORT_HELP = ("Build a model the run folder names as import:package.module:factory (runs that code); "
                      "only for run folders you trust.")
_TRUST_TORCHSCRIPT_HELP = "Load a TorchScript model the run folder holds (it carries code); only for run folders you trust."


class _Stopped(Exception):
    """Carries a Ctrl-C past typer, which would turn it into a bare exit code and drop where it stopped."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Argument(None, help="YAML run config; omitted: the built-in digits demo."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a config key, e.g. --set distill.epochs=5 (repeatable)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in the same folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder (only once the new run succeeds)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; still prints the summary."),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", metavar="SEEDS",
        help="Run once per seed (0-4, 0,2,5 or 0-2,7) into RUN/seed-N/, then RUN/summary.json and summary.html: what holds across seeds.",
    ),
    jobs: int = typer.Option(1, "--jobs", min=1, help="With --seeds: seeds run at once, each in its own process."),
    same_teacher: bool = typer.Option(
        False, "--same-teacher", help="With --seeds: train the teacher once (first seed) and reuse it, with its split, for every seed."
    ),
) -> None:
    """Train the teacher, distil the student, evaluate, explain and write the report."""
    from .config import load_config
    from .distributed import is_main, world
    from .pipeline import run
    from .report.verdict import print_verdict

    if seeds is None and (jobs != 1 or same_teacher):
        raise DistilensError(f"{'--jobs' if jobs != 1 else '--same-teacher'} goes with --seeds, e.g. --seeds 0-4")
    cfg = load_config(config, set_ or [])
    if seeds is not None:
        if world().size > 1:
            raise DistilensError("--seeds runs its seeds as separate processes; run it without torchrun")
        _run_seeds(cfg, seeds, out=out, jobs=jobs, same_teacher=same_teacher, resume=resume, overwrite=overwrite, quiet=quiet)
        return
    main = is_main()  # under torchrun only rank 0 prints
    err = Console(stderr=True, quiet=quiet or not main)
    try:
        result = run(cfg, out=out, overwrite=overwrite, resume=resume, console=err, command=_command_line())
    except KeyboardInterrupt as exc:
        raise _Stopped(exc) from None
    if main:
        _print_summary(result.metrics, result.path)
        print_verdict(Console(), result.metrics, cfg.report.model_dump())  # the verdict: the console's last lines


def _run_seeds(cfg: Any, seeds: str, *, out: Path | None, jobs: int, same_teacher: bool, resume: bool, overwrite: bool,
               quiet: bool) -> None:
    """``run --seeds``: one line per finished seed, then the summary's path and the verdict over seeds."""
    from .report.verdict import print_verdict, summary_verdict_lines
    from .seeds import parse_seeds, run_seeds

    console = Console(soft_wrap=True)

    def on_seed(seed: int, path: Path, metrics: dict[str, Any], read_back: bool) -> None:
        s, b = metrics.get("student") or {}, metrics.get("baseline") or {}
        parts = [f"student {_fmt_pct(s.get('accuracy'))}"] + ([f"label-only {_fmt_pct(b.get('accuracy'))}"] if b else [])
        console.print(f"seed {seed}: {', '.join(parts)}{' (read back)' if read_back else ''}  {path / 'report.html'}")

    try:
        result = run_seeds(cfg, parse_seeds(seeds), out=out, jobs=jobs, same_teacher=same_teacher, resume=resume,
                           overwrite=overwrite, console=Console(stderr=True, quiet=quiet), command=_command_line(), on_seed=on_seed)
    except KeyboardInterrupt as exc:
        raise _Stopped(exc) from None
    t = result.summary["timing_s"]
    console.print(f"{len(result.runs)} seeds: runs {t['runs_total']:.1f} s, the whole command {t['wall']:.1f} s")
    console.print(f"summary: {result.path / 'summary.html'}")
    print_verdict(console, {}, cfg.report.model_dump(), lines=summary_verdict_lines(result.summary, cfg.report.model_dump()))


@app.command("explain")
def explain_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder written by `distilens run`."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Explainer (repeatable); default: the run's config."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Test inputs to explain; default: the run's config."),
    allow_import: bool = typer.Option(False, "--allow-import", help=_ALLOW_IMPORT_HELP),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help=_TRUST_TORCHSCRIPT_HELP),
) -> None:
    """Explain the run's teacher and student again and update metrics.json and the report.

    --method adds methods to those the run already has (they are explained again alongside).
    """
    from .commands import explain_run

    block = explain_run(run_dir, methods=method or None, n_samples=n, command=_command_line(),
                        allow_import=allow_import, trust_torchscript=trust_torchscript)
    console = Console()
    if method:
        console.print(f"methods: {', '.join(e['method'] for e in block['methods'])} "
                      "(--method adds to the run's methods; all are explained again on the same inputs)")
    for entry in block["methods"]:
        a = entry["agreement"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in a.items() if v is not None)
        console.print(f"{entry['method']} ({entry['n_samples']} test inputs): {parts}")
    console.print(f"report: {run_dir / 'report.html'}")


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="A run folder written by `distilens run`.")) -> None:
    """Rebuild report.html from the run folder's files, without training."""
    from .commands import report_run

    path = report_run(run_dir, command=None)
    typer.echo(f"report: {path}")


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder written by `distilens run`."),
    format: str = typer.Option(..., "--format", "-f", help="onnx | torchscript"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: dynamic int8 quantisation"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default: RUN/student.onnx or .pt)."),
    allow_import: bool = typer.Option(False, "--allow-import", help=_ALLOW_IMPORT_HELP),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help=_TRUST_TORCHSCRIPT_HELP),
) -> None:
    """Export the run's student, and check its outputs against PyTorch on the test split."""
    from .commands import export_run

    if format not in ("onnx", "torchscript"):
        raise DistilensError(f"--format '{format}': choose onnx or torchscript")
    if quantize not in (None, "int8"):
        raise DistilensError(f"--quantize '{quantize}': the only choice is int8")
    _check_out_file(out, "student.onnx" if format == "onnx" else "student.pt")
    report = export_run(run_dir, format=format, quantize=quantize, out=out,  # type: ignore[arg-type]
                        allow_import=allow_import, trust_torchscript=trust_torchscript)
    for key, value in report.items():
        typer.echo(f"{key}: {value}")


@app.command("predict")
def predict_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder written by `distilens run`."),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="An image, a folder of images, or a CSV file."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the predictions CSV here (default: stdout)."),
    explain: bool = typer.Option(False, "--explain", help="Add attributions: a heatmap PNG per image, per-feature columns for tables, word scores for texts."),
    allow_import: bool = typer.Option(False, "--allow-import", help=_ALLOW_IMPORT_HELP),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help=_TRUST_TORCHSCRIPT_HELP),
) -> None:
    """Predict with the run's student: class and probability per input, as CSV."""
    from .commands import predict_run

    _check_out_file(out, "predictions.csv")
    text = predict_run(run_dir, input_path, out=out, explain=explain, allow_import=allow_import,
                       trust_torchscript=trust_torchscript)
    if text is not None:
        typer.echo(text, nl=False)


@app.command("list")
def list_cmd(
    what: str = typer.Argument(..., help="datasets | models | losses | explainers"),
    data: str = typer.Option("builtin:digits", "--data", help="For models: count parameters for this data's inputs."),
) -> None:
    """List the registered datasets, models (with parameter counts), losses or explainers (with their input kinds)."""
    from .data import DATASETS
    from .distill import LOSSES
    from .explain import EXPLAINERS

    if what == "models":
        from .data import load_dataset
        from .models import describe_models

        for row in describe_models(load_dataset(data).spec):
            params = f"{row['params']:>10,}" if row["params"] is not None else f"{'–':>10}"
            typer.echo(f"{row['name']:<17}{params}  {plain(row['summary'])}{'  (' + row['note'] + ')' if row['note'] else ''}")
        return
    if what == "explainers":  # one line each: name, the input kinds it explains, what it does
        for name in EXPLAINERS.names():
            entry = EXPLAINERS.get(name)
            typer.echo(f"{name:<22}{', '.join(entry.kinds):<20}{plain(entry.summary)}")
        return
    registries: dict[str, Any] = {"datasets": DATASETS, "losses": LOSSES}
    if what not in registries:
        raise DistilensError(f"cannot list '{what}'; choose one of: {', '.join(_LISTABLE)}")
    registry = registries[what]
    for name in registry.names():
        doc = (registry.get(name).__doc__ or "").strip().splitlines()
        typer.echo(f"{name:<22}{plain(doc[0]) if doc else ''}")


def plain(doc: str) -> str:
    """A docstring line without reStructuredText markup: ``x`` and :func:`~a.b.x` become x."""
    doc = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), doc)
    return re.sub(r"``([^`]+)``", r"\1", doc)


def _check_out_file(out: Path | None, example: str) -> None:
    """``--out`` of export and predict names a file: refuse a folder before any work is done."""
    if out is None:
        return
    if out.is_dir():
        raise DistilensError(f"--out '{out}' is a folder; give the path of a file, e.g. --out {out / example}")
    from .io import nearest_existing

    ancestor = nearest_existing(out.parent)
    if not ancestor.is_dir():
        raise DistilensError(f"--out '{out}': '{ancestor}' is a file, not a folder; choose another place")


def _command_line() -> str:
    return shlex.join(["distilens", *sys.argv[1:]])


def _fmt_pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def speed_line(metrics: dict[str, Any]) -> str:
    """The student's speed-up at batch 1 and 64, or "noisy machine" where the latency ranges overlap."""
    c = metrics["compression"]
    parts = [f"{c[f'speedup_batch{n}']}× faster at batch {n}" if c.get(f"speedup_batch{n}") is not None
             else f"no clear speed-up at batch {n} (latency ranges overlap: noisy machine)" for n in (1, 64)]
    return ", ".join(parts)


def _print_summary(metrics: dict[str, Any], path: Path) -> None:
    console = Console()
    table = Table(title=f"distilens · {metrics['dataset']['name']}", title_justify="left")
    for col in ("model", "accuracy", "agreement", "params", "ms @1", "ms @64"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for role in ("teacher", "student", "baseline"):
        m = metrics.get(role)
        if m:
            table.add_row(
                role, _fmt_pct(m["accuracy"]), _fmt_pct(m.get("agreement")), f"{m['params']:,}",
                *(f"{m['latency_ms'][key]:.2f}" for key in ("batch1", "batch64")),
            )
    console.print(table)
    c = metrics["compression"]
    console.print(f"compression: {c['params_ratio']}× fewer parameters, {c['flops_ratio']}× fewer FLOPs; {speed_line(metrics)}")
    if ref := metrics.get("reference"):
        console.print(f"reference: TF-IDF + logistic regression {_fmt_pct(ref['test_accuracy'])} on the same test split "
                      f"(C={ref['C']:g}, {ref['seconds']:.1f} s)")
    for block in metrics.get("explanations", {}).get("methods", []):
        a = block["agreement"]
        parts = ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} –" for k, v in a.items())
        console.print(f"explanations ({block['method']}, {block['n_samples']} test inputs): {parts}")
    console.print(f"time: {metrics['timing_s']['total']:.1f} s")
    console.print(f"report: {path / 'report.html'}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning :class:`DistilensError` into one line and exit code 2.

    SIGTERM is Ctrl-C's twin: during training it stops after the epoch's checkpoint, and
    elsewhere at once, with the same one line; the exit code is then 143 (130 for Ctrl-C).
    """
    from .interrupt import note_signal, stop_signal
    from .runfolder import is_disk_full, release_all

    args = sys.argv[1:] if argv is None else list(argv)
    note_signal(None)
    previous_term = _catch_sigterm()
    try:
        if app(args=args, prog_name="distilens", standalone_mode=False) == 130:
            raise KeyboardInterrupt  # typer turned a Ctrl-C into its exit code; say so all the same
    except DistilensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, _Stopped) as exc:
        print(_interrupted_message(exc.interrupt if isinstance(exc, _Stopped) else exc, args), file=sys.stderr)
        _ignore_stop_signals()  # a further signal while exiting: no traceback from atexit
        sys.exit(143 if stop_signal() == signal.SIGTERM else 130)
    except SystemExit:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        release_all(discard=True)
        print(f"error: {_disk_full_message(exc)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - click's own usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `distilens`: the help was shown
            sys.exit(0)
        click_error = _click_exception(exc)
        if click_error is None:
            raise
        print(f"error: {click_error}", file=sys.stderr)
        sys.exit(2)
    finally:
        release_all()  # run folder locks of a run that ended any other way
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _catch_sigterm() -> Any:
    """Make SIGTERM raise ``KeyboardInterrupt`` (noted as SIGTERM); returns the handler it replaced, or ``None``."""
    import threading

    from .interrupt import note_signal

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: Any) -> None:
        note_signal(signum)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, terminate)


def _ignore_stop_signals() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def _disk_full_message(exc: OSError) -> str:
    from .io import write_error

    return str(write_error(exc, exc.filename or "the run folder"))


def _interrupted_message(exc: KeyboardInterrupt, args: list[str]) -> str:
    """One line after Ctrl-C: where training stopped, and the command that continues it."""
    from .interrupt import Interrupted

    if not args or args[0] != "run":
        return "interrupted; run the same command again"
    resume = [a for a in args if a != "--overwrite"] + ([] if "--resume" in args else ["--resume"])
    where = "interrupted"
    if isinstance(exc, Interrupted) and exc.role is not None:
        where = f"interrupted after epoch {exc.epoch} of {exc.epochs} of {exc.role}"
    return f"{where}; resume with: {shlex.join(['distilens', *resume])}"


def _click_exception(exc: Exception) -> str | None:
    """Message of a command-line usage error (unknown option, missing argument), else None."""
    name = type(exc).__name__
    if name in {"UsageError", "BadParameter", "NoSuchOption", "MissingParameter", "BadOptionUsage", "BadArgumentUsage"}:
        return " ".join(str(getattr(exc, "message", exc) or exc).split())
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
