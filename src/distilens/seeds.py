"""One job under several seeds: ``distilens run CONFIG --seeds 0-4`` → ``RUN/seed-N/`` + ``RUN/summary.json|html``.

Each seed is a whole run (:func:`distilens.pipeline.run`) with ``seed: N`` into its own run
folder, so each resumes on its own and each keeps its report. Then :func:`distilens.summary.aggregate`
says what holds across them, and ``summary.html`` shows it with the verdict over seeds.

* **The teacher.** A teacher given as ``teacher.weights`` is the same file for every seed. A
  teacher trained here is trained again for each seed (its seed is the run's), unless
  ``same_teacher``: then the first seed trains it (and its ``teacher_reseed``, if asked) and
  the other seeds load those weights — and keep the first seed's split
  (``data.split_seed``), since a different split would put the teacher's training data
  into their test sets.
* **Processes.** ``jobs`` > 1 runs that many seeds at once, each in its own process with
  ``cores / jobs`` torch threads (``runtime.threads`` when set); with ``same_teacher`` the
  first seed runs alone first.
* **Resume.** A seed whose run folder is finished with the same config is read back, one
  interrupted is continued (``resume=True``), one missing is run.

The run folder RUN holds only seed folders (and their staging folders and locks) and
the summary files; anything else is refused, and nothing is deleted.

Example:
    >>> result = run_seeds(load_config("digits.yaml"), parse_seeds("0-4"), out="runs/digits-5", jobs=2)
    >>> result.summary["paired"]["student_minus_baseline"]["accuracy"]["t_ci_low"]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any, Callable

import torch
from rich.console import Console

from .config import RunConfig, dump_config
from .errors import ConfigError, DistilensError, RunFolderError
from .io import atomic_write_json
from .runfolder.contents import classify

__all__ = ["parse_seeds", "run_seeds", "SeedsResult", "seed_folder", "SUMMARY_JSON", "SUMMARY_HTML", "MAX_SEEDS"]

SUMMARY_JSON = "summary.json"
SUMMARY_HTML = "summary.html"
#: At most this many seeds in one command (a typo like 0-10000 fails at once).
MAX_SEEDS = 1000
#: What a seeds folder may hold: seed folders, their staging folders, locks and replaced copies, the summary.
_ENTRIES = re.compile(r"seed-\d+|\.seed-\d+\.(partial|lock|old-[0-9a-f]+)|summary\.(json|html)|\.[^/]+\.tmp")


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,5"`` or ``"0-2,7"``: sorted, each once.

    Raises:
        ConfigError: anything else (one line saying what works).

    Example:
        >>> parse_seeds("3,0-2,2")
        [0, 1, 2, 3]
    """
    seeds: set[int] = set()
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ConfigError(f"--seeds '{text}': '{part}' is not a seed or a range; write e.g. 0-4, 0,2,5 or 0-2,7")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise ConfigError(f"--seeds '{text}': the range {part} runs backwards; write {hi}-{lo}")
        if hi - lo + 1 + len(seeds) > MAX_SEEDS:
            raise ConfigError(f"--seeds '{text}': more than {MAX_SEEDS} seeds")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def seed_folder(root: Path, seed: int) -> Path:
    """``root/seed-N``, where seed N's run goes."""
    return root / f"seed-{seed}"


@dataclass
class SeedsResult:
    """A finished set of seeds: the folder, each seed's run folder, and summary.json's content."""

    path: Path
    runs: dict[int, Path]
    summary: dict[str, Any]
    reused: list[int] = field(default_factory=list)


def _check_root(root: Path, *, resume: bool, overwrite: bool) -> None:
    """RUN holds only what a seeds run writes; an existing one needs --resume or --overwrite."""
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"'{root}' exists and is not a folder; choose another --out")
    if not root.is_dir():
        return
    entries = sorted(p.name for p in root.iterdir())
    foreign = [e for e in entries if not _ENTRIES.fullmatch(e)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (" and more" if len(foreign) > 3 else "")
        raise RunFolderError(f"'{root}' is not a folder of seeds (it holds {shown}); distilens never replaces it: "
                             "choose another --out")
    if entries and not (resume or overwrite):
        raise RunFolderError(f"'{root}' already holds runs of seeds; pass --resume to continue them, --overwrite to run "
                             "them again, or choose another --out")


def _seed_config(cfg: RunConfig, seed: int, shared: dict[str, Any] | None) -> RunConfig:
    """The config of one seed: ``seed`` set and, with a shared teacher, its weights and split."""
    out = cfg.model_copy(update={"seed": seed}, deep=True)
    if shared:
        out.teacher = out.teacher.model_copy(update={"weights": shared["weights"]})
        out.data = out.data.model_copy(update={"split_seed": shared["split_seed"]})
        if shared.get("reference"):
            out.explain = out.explain.model_copy(update={"reference_teacher": shared["reference"]})
    return out


def _finished_with(folder: Path, cfg: RunConfig) -> bool:
    """Whether ``folder`` is a finished run of exactly ``cfg`` (then --resume reads it back)."""
    from .pipeline.context import with_defaults

    if classify(folder).state != "finished" or not (folder / "config.yaml").is_file():
        return False
    return (folder / "config.yaml").read_text(encoding="utf-8") == dump_config(with_defaults(cfg))


def _threads(cfg: RunConfig, jobs: int) -> int:
    return cfg.runtime.threads or max(1, (os.cpu_count() or 1) // jobs)


def run_seeds(
    cfg: RunConfig,
    seeds: list[int],
    *,
    out: str | Path | None = None,
    jobs: int = 1,
    same_teacher: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    console: Console | None = None,
    command: str | None = None,
    on_seed: Callable[[int, Path, dict[str, Any], bool], None] | None = None,
) -> SeedsResult:
    """Run ``cfg`` once per seed into ``out/seed-N`` and write ``out/summary.json`` and ``summary.html``.

    Args:
        cfg: The run config; its ``seed`` is replaced by each of ``seeds``.
        seeds: The seeds (:func:`parse_seeds`).
        out: The folder of seeds (default ``runs/<cfg.name>``).
        jobs: Seeds run at once, each in its own process.
        same_teacher: Train the teacher once (first seed) and reuse it, with its split, for
            the others; with a teacher given as ``teacher.weights`` the file is reused anyway.
        resume: Read back finished seeds, continue interrupted ones, run missing ones.
        overwrite: Run every seed again (each seed folder is replaced once its new run succeeded).
        console: Progress and per-seed lines (stderr); the runs' bars show only with ``jobs=1``.
        command: The command line, shown in the reports.
        on_seed: Called as each seed finishes: ``(seed, run folder, metrics, read back)``.

    Raises:
        ConfigError: no seeds, ``jobs`` < 1, ``same_teacher`` with a teacher given as weights.
        RunFolderError: ``out`` holds anything else, or exists without ``resume``/``overwrite``.
        DistilensError: a seed's run failed (``seed N: …``), after the seeds running with it finished.
    """
    from .pipeline import run
    from .report.summary_page import write_summary_page
    from .summary import aggregate

    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. --seeds 0-4")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1")
    if same_teacher and cfg.teacher.weights:
        raise ConfigError("--same-teacher: the teacher is already one file for every seed (teacher.weights); drop the flag")
    console = console or Console(stderr=True, quiet=True)
    root = Path(out) if out is not None else Path("runs") / cfg.name
    _check_root(root, resume=resume, overwrite=overwrite)
    started = time.perf_counter()
    done: dict[int, tuple[Path, dict[str, Any]]] = {}
    reused: list[int] = []

    def finish(seed: int, path: Path, read_back: bool) -> None:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        done[seed] = (path, metrics)
        if read_back:
            reused.append(seed)
        if on_seed is not None:
            on_seed(seed, path, metrics, read_back)

    shared: dict[str, Any] | None = None
    todo = list(seeds)
    if same_teacher:  # the first seed trains the teacher the others load
        first = todo.pop(0)
        _run_sequential(cfg, [first], None, root, jobs=1, resume=resume, overwrite=overwrite, console=console,
                        command=command, finish=finish, run=run)
        first_dir = done[first][0]
        shared = {"weights": str(first_dir / "teacher.safetensors"),
                  "split_seed": cfg.data.split_seed if cfg.data.split_seed is not None else first,
                  "reference": str(first_dir / "teacher_reseed.safetensors") if "teacher_reseed" in cfg.explain.references
                  and not cfg.explain.reference_teacher else cfg.explain.reference_teacher}
    if jobs == 1 or len(todo) <= 1:
        _run_sequential(cfg, todo, shared, root, jobs=1, resume=resume, overwrite=overwrite, console=console,
                        command=command, finish=finish, run=run)
    else:
        _run_parallel(cfg, todo, shared, root, jobs=jobs, resume=resume, overwrite=overwrite, console=console,
                      command=command, finish=finish)
    summary = aggregate({s: m for s, (_, m) in done.items()})
    summary["runs"] = {str(s): seed_folder(root, s).name for s in sorted(done)}
    summary["same_teacher"] = same_teacher
    summary["jobs"] = jobs
    summary["command"] = command
    total = sum(v for v in summary["timing_s"].values() if v is not None and v > 0)
    summary["timing_s"]["runs_total"] = round(total, 3)
    summary["timing_s"]["reused"] = sorted(reused)
    summary["timing_s"]["wall"] = round(time.perf_counter() - started, 3)  # before the page: updated after it
    write_summary_page(root, summary, thresholds=cfg.report.model_dump())
    summary["timing_s"]["wall"] = round(time.perf_counter() - started, 3)
    atomic_write_json(root / SUMMARY_JSON, summary)
    return SeedsResult(root, {s: p for s, (p, _) in done.items()}, summary, sorted(reused))


def _run_sequential(
    cfg: RunConfig, seeds: list[int], shared: dict[str, Any] | None, root: Path, *, jobs: int, resume: bool, overwrite: bool,
    console: Console, command: str | None, finish: Callable[[int, Path, bool], None], run: Callable[..., Any],
) -> None:
    """Seeds one after the other in this process (progress bars shown)."""
    for seed in seeds:
        seed_cfg = _seed_config(cfg, seed, shared)
        folder = seed_folder(root, seed)
        if resume and _finished_with(folder, seed_cfg):
            finish(seed, folder, True)
            continue
        console.print(f"seed {seed}: {folder}")
        again = resume and (folder.is_dir() or (root / f".{folder.name}.partial").is_dir())
        try:
            result = run(seed_cfg, out=folder, resume=again, overwrite=overwrite and not again, console=console, command=command)
        except DistilensError as exc:
            raise type(exc)(f"seed {seed}: {exc}") from None
        finish(seed, result.path, False)


def _worker(cfg: RunConfig, seed: int, folder: str, resume: bool, overwrite: bool, threads: int, command: str | None,
            queue: Any) -> None:
    """One seed in a child process: the run, then ``(seed, status, message)`` on the queue.

    ``cfg`` arrives pickled, which keeps which keys the user set (text defaults and the
    explicit explain methods depend on it).
    """
    from .interrupt import note_signal
    from .pipeline import run

    def terminate(signum: int, frame: Any) -> None:  # SIGTERM outside training: stop as Ctrl-C does
        note_signal(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    torch.set_num_threads(threads)
    try:
        run(cfg, out=folder, resume=resume, overwrite=overwrite, command=command)
    except DistilensError as exc:
        queue.put((seed, "error", str(exc)))
        return
    except KeyboardInterrupt:
        queue.put((seed, "interrupted", ""))
        return
    except BaseException as exc:  # reported to the parent, which would otherwise wait for this seed forever
        queue.put((seed, "error", f"{type(exc).__name__}: {exc}"))
        raise
    queue.put((seed, "ok", folder))


def _next_report(queue: Any, running: dict[int, Any]) -> tuple[int, str, str]:
    """The next ``(seed, status, message)`` a child reports; a child that died without reporting
    (killed, out of memory) is reported here as an error instead of being waited for forever."""
    while True:
        try:
            return queue.get(timeout=5.0)
        except Empty:
            for seed, proc in running.items():
                if proc.exitcode is not None:
                    try:  # its report may have arrived just as it exited
                        return queue.get(timeout=1.0)
                    except Empty:
                        return seed, "error", f"the process stopped with exit code {proc.exitcode} without a result"


def _run_parallel(
    cfg: RunConfig, seeds: list[int], shared: dict[str, Any] | None, root: Path, *, jobs: int, resume: bool, overwrite: bool,
    console: Console, command: str | None, finish: Callable[[int, Path, bool], None],
) -> None:
    """Up to ``jobs`` seeds at once, each in a spawned process (torch and fork do not mix)."""
    from .interrupt import stop_signal

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    pending = []
    for seed in seeds:
        seed_cfg = _seed_config(cfg, seed, shared)
        folder = seed_folder(root, seed)
        if resume and _finished_with(folder, seed_cfg):
            finish(seed, folder, True)
        else:
            again = resume and (folder.is_dir() or (root / f".{folder.name}.partial").is_dir())
            pending.append((seed, seed_cfg, folder, again))
    running: dict[int, Any] = {}
    errors: list[str] = []
    interrupted = False
    threads = _threads(cfg, jobs)
    try:
        while pending or running:
            while pending and len(running) < jobs and not errors:
                seed, seed_cfg, folder, again = pending.pop(0)
                proc = ctx.Process(target=_worker, args=(seed_cfg, seed, str(folder), again, overwrite and not again, threads,
                                                         command, queue), daemon=False)
                proc.start()
                running[seed] = proc
                console.print(f"seed {seed}: started ({threads} thread{'s' if threads > 1 else ''}) → {folder}")
            if not running:
                break
            seed, status, message = _next_report(queue, running)
            running.pop(seed).join()
            if status == "ok":
                finish(seed, Path(message), False)
                console.print(f"seed {seed}: done")
            elif status == "error":
                errors.append(f"seed {seed}: {message}")
            else:
                interrupted = True
            if status != "ok":
                pending.clear()
    except KeyboardInterrupt:
        interrupted = True
        for proc in running.values():  # Ctrl-C reached every process; SIGTERM only this one: pass it on
            if stop_signal() == signal.SIGTERM and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in running.values():
            proc.join()
    if errors:
        raise DistilensError(errors[0] + (f" (and {len(errors) - 1} more seeds failed)" if len(errors) > 1 else ""))
    if interrupted:
        raise KeyboardInterrupt
