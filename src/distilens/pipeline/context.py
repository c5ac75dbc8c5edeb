"""What every stage of a run reads: the config, the device, the folder, the console, the clock.

Example:
    >>> ctx = RunContext.prepare(load_config(None), torch.device("cpu"), out="runs/x")
    >>> with ctx.timings.timed("data"):
    ...     data = load_stage_data(ctx)
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import distributed
from .._version import __version__
from ..config import RunConfig, dump_config
from ..data.recipes import with_dataset_defaults
from ..distill import TrainingDiverged
from ..errors import ConfigError, DistilensError
from ..interrupt import check_interrupt, deferred_interrupts
from ..modalities import modality_for
from ..runfolder import RunFolder
from ..timings import Timings

__all__ = ["RunContext", "Timings", "with_defaults"]


def with_defaults(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its built-in data set's recipe (:mod:`distilens.data.recipes`), then the defaults of its
    kind of data (text: text architectures), each only where the config leaves the settings unset."""
    cfg = with_dataset_defaults(cfg)
    modality = modality_for(cfg.data)
    return modality.with_defaults(cfg) if modality is not None else cfg


@dataclass
class RunContext:
    """One run's settings and shared services, handed to every stage.

    Attributes:
        config: The resolved config (with the data kind's defaults applied).
        config_yaml: ``config`` as written to config.yaml.
        device: Where models train and run.
        folder: The run folder (``final``) and its staging folder, where the run writes.
        console: Progress bars and notices (stderr; quiet under ``--quiet``).
        world: The processes of a data-parallel run (one without torchrun).
        resume: Whether finished stages of an interrupted run are reused.
        command: The command line that started the run (shown in the report).
        timings: Seconds per stage.
        progress: The progress bars while models train.
    """

    config: RunConfig
    config_yaml: str
    device: torch.device
    folder: RunFolder
    console: Console
    world: distributed.World
    resume: bool = False
    command: str | None = None
    timings: Timings = field(default_factory=Timings)
    progress: Progress | None = None

    @classmethod
    def prepare(
        cls, cfg: RunConfig, device: torch.device, *, out: str | Path | None = None, overwrite: bool = False,
        resume: bool = False, console: Console | None = None, command: str | None = None,
    ) -> "RunContext":
        """Check the run folder and the settings; nothing is written yet.

        Raises:
            RunFolderError: the run folder may not be used (see :meth:`RunFolder.prepare`).
            ConfigError: ``distill.cache_dir`` cannot be written.
        """
        cfg, world = with_defaults(cfg), distributed.world()
        config_yaml = dump_config(cfg)
        folder = RunFolder.prepare(out or Path("runs") / cfg.name, overwrite=overwrite, resume=resume, config_yaml=config_yaml,
                                   lock=world.main)  # released by held_run_folders() around the run
        if cfg.distill.cache_dir:
            _check_cache_dir(Path(cfg.distill.cache_dir))
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        return cls(cfg, config_yaml, device, folder, console or Console(stderr=True, quiet=True), world,
                   resume=resume, command=command)

    @classmethod
    def of_finished_run(cls, folder: Path, cfg: RunConfig, *, command: str | None = None) -> "RunContext":
        """The context of a command on a finished run folder: stages write into it directly, on the CPU."""
        return cls(cfg, dump_config(cfg), torch.device("cpu"), RunFolder(folder, folder), Console(stderr=True, quiet=True),
                   distributed.world(), command=command)

    @property
    def staging(self) -> Path:
        """Where the run writes until it is committed."""
        return self.folder.staging

    def cache_folders(self) -> tuple[list[Path], list[Path]]:
        """``(read, write)``: where the teacher's stored outputs are looked for, in order (this run's
        ``cache/``, the committed folder's, ``distill.cache_dir``), and where they are kept (this
        run's ``cache/`` and ``distill.cache_dir``). The soft labels and the teacher's explanations use both."""
        shared = [Path(self.config.distill.cache_dir)] if self.config.distill.cache_dir else []
        return [self.staging / "cache", self.folder.final / "cache", *shared], [self.staging / "cache", *shared]

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """Open the staging folder (rank 0 creates it, the others wait); on bad input remove it.

        A diverged training keeps the staging folder (its last good checkpoint, for ``--resume``).
        """
        staging = distributed.on_main(lambda: self.folder.open(resume=self.resume)) or self.folder.staging
        try:
            yield staging
        except TrainingDiverged:
            raise
        except DistilensError:
            if self.world.main:
                self.folder.discard()
            raise

    @contextmanager
    def training(self) -> Iterator[None]:
        """Progress bars, and Ctrl-C deferred to the end of an epoch (interrupt.py; ``--resume`` continues)."""
        bar = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), console=self.console, disable=self.console.quiet or not self.world.main,
        )
        with bar, deferred_interrupts():
            self.progress = bar
            try:
                yield
            finally:
                self.progress = None

    @contextmanager
    def stage(self, doing: str) -> Iterator[None]:
        """A spinner saying what the run is doing (``explaining …``) while a stage without a bar runs; then its time.

        Silent under ``--quiet`` and on ranks other than 0.
        """
        if self.console.quiet or not self.world.main:
            yield
            return
        t0 = time.perf_counter()
        with self.console.status(doing):
            yield
        self.console.print(f"{doing}: done in {time.perf_counter() - t0:.1f} s")

    def on_epoch(self, role: str, epochs: int) -> "EpochBar":
        """``role``'s bar: ``fit``'s ``on_epoch`` (after each epoch's checkpoint; Ctrl-C) and, as
        ``.step``, its ``progress`` (the steps of the epoch under way)."""
        return EpochBar(self.progress, role, epochs)

    def waiting(self, role: str) -> Callable[[str], None]:
        """A bar row for work without steps (the soft-label pass); call the result with its outcome when done."""
        bar = self.progress
        task = bar.add_task(role, total=None, status="") if bar is not None else None

        def done(status: str) -> None:
            if bar is not None and task is not None:
                bar.update(task, total=1, completed=1, status=status)

        return done

    def environment(self) -> dict[str, str]:
        """The ``environment`` block of metrics.json: versions, device, processes, platform."""
        return {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "distilens": __version__,
            "device": str(self.device),
            "processes": str(self.world.size),
            "platform": platform.platform(),
        }


class EpochBar:
    """One model's row of the training bars: epochs done, the last epoch's loss and accuracy, and
    the running epoch's steps (long epochs are not minutes of a frozen bar)."""

    def __init__(self, bar: Progress | None, role: str, epochs: int) -> None:
        self.bar, self.role, self.epochs, self.last = bar, role, epochs, ""
        self.task = bar.add_task(role, total=epochs, status="") if bar is not None else None

    def __call__(self, row: dict[str, Any]) -> None:
        """After each epoch's checkpoint: advance, show its loss and accuracy, honour Ctrl-C."""
        self.last = f"loss {row['loss']:.3f}  val acc {100 * row['val_accuracy']:.1f}%"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, status=self.last)
        check_interrupt(self.role, int(row["epoch"]), self.epochs)

    def step(self, label: str, done: int, total: int) -> None:
        """``fit``'s ``progress`` callback: the epoch under way, ``done`` of ``total`` steps."""
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, status=f"{label}: step {done}/{total}  {self.last}".rstrip())


def _check_cache_dir(path: Path) -> None:
    """``distill.cache_dir`` must be a writable folder, or creatable: checked before any training."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"distill.cache_dir '{path}': '{probe}' is a file; give a folder (it is created if missing)")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"distill.cache_dir '{path}': cannot write in '{probe}'; give a writable folder")
