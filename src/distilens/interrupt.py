"""Ctrl-C (or SIGTERM) during training: finish the epoch, write its checkpoint, then stop cleanly.

Inside :func:`deferred_interrupts` the first SIGINT or SIGTERM only sets a flag (and says
so on stderr); the training loop's per-epoch callback, which runs after the epoch's
checkpoint is written, calls :func:`check_interrupt` and raises :class:`Interrupted` there.
A second signal raises ``KeyboardInterrupt`` at once. Outside the block Ctrl-C behaves as
usual. The previous handlers are restored on the way out, whatever happens.
:func:`stop_signal` tells which signal stopped the run (the CLI exits 130 after SIGINT,
143 after SIGTERM, as a shell reports a process those signals ended).

Example:
    >>> with deferred_interrupts():
    ...     fit(model, bundle, on_epoch=lambda row: check_interrupt("student", row["epoch"], 30))
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

__all__ = ["Interrupted", "deferred_interrupts", "check_interrupt", "interrupt_requested", "stop_signal", "note_signal",
           "STOP_SIGNALS"]

#: The signals that stop a run after the epoch's checkpoint (SIGTERM: what a job scheduler sends).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped at an epoch boundary after a Ctrl-C; the checkpoint of ``epoch`` is written.

    Attributes:
        role: ``teacher``, ``student`` or ``baseline`` (``None``: stopped between stages).
        epoch: The last finished epoch of that model (1-based), or ``None``.
        epochs: The epochs that model was asked to train, or ``None``.
    """

    def __init__(self, role: str | None = None, epoch: int | None = None, epochs: int | None = None) -> None:
        self.role, self.epoch, self.epochs = role, epoch, epochs
        where = f"after epoch {epoch} of {role}" if role is not None else "between stages"
        super().__init__(f"interrupted {where}")


class _Flag:
    requested = False
    depth = 0
    signum: int | None = None  # the last stop signal received, kept after the block for the exit code


def stop_signal() -> int | None:
    """The last SIGINT/SIGTERM that stopped (or is stopping) a run in this process; ``None``: none."""
    return _Flag.signum


def note_signal(signum: int | None) -> None:
    """Record ``signum`` as the stop signal (``None`` forgets it; the CLI does so at each start)."""
    _Flag.signum = signum


def interrupt_requested() -> bool:
    """Whether a Ctrl-C arrived inside :func:`deferred_interrupts` and has not been acted on."""
    return _Flag.requested


def check_interrupt(role: str, epoch: int, epochs: int) -> None:
    """Raise :class:`Interrupted` if a Ctrl-C is pending; call it once an epoch's checkpoint is written."""
    if _Flag.requested:
        raise Interrupted(role, epoch, epochs)


def _handler(signum: int, frame: FrameType | None) -> None:
    _Flag.signum = signum
    if _Flag.requested:
        raise KeyboardInterrupt  # the second signal: stop now
    _Flag.requested = True
    what = "" if signum == signal.SIGINT else f"{signal.Signals(signum).name}: "
    print(f"{what}stopping after this epoch's checkpoint; press Ctrl-C again to stop at once", file=sys.stderr, flush=True)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within the block, the first Ctrl-C waits for the next :func:`check_interrupt` (see module doc).

    Raises:
        Interrupted: on leaving the block normally while a Ctrl-C is still pending (it came
            after the last epoch), so the caller stops before its next stage.
    """
    if threading.current_thread() is not threading.main_thread() or _Flag.depth:
        yield  # signal handlers belong to the main thread; an outer block already handles it
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, _handler)
    _Flag.depth, _Flag.requested = 1, False
    try:
        yield
        if _Flag.requested:
            raise Interrupted()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _Flag.depth, _Flag.requested = 0, False
