"""Progress for long calls of the Python API: a bar on the terminal, a callback, or nothing.

:func:`~distilens.distill.fit` and :func:`~distilens.explain.compare` take the same
``progress`` argument: ``None`` (the default) draws a bar on stderr when it is a terminal,
``True`` always, ``False`` never; a callable receives ``(label, done, total)`` instead of a
bar (the CLI passes one that feeds its own bars). The bar shows the label (``epoch 3/30``,
``student``), the count and the time left.

Example:
    >>> with reporter(True, "fit") as report:
    ...     for step in range(1, 101):
    ...         report("epoch 1/1", step, 100)
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Union

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["ProgressArg", "Report", "reporter"]

#: ``(label, done, total)``: called after each unit of work.
Report = Callable[[str, int, int], None]
#: What ``progress=`` accepts.
ProgressArg = Union[bool, Report, None]


@contextlib.contextmanager
def reporter(progress: ProgressArg, description: str) -> Iterator[Report | None]:
    """The ``report(label, done, total)`` function ``progress`` asks for (``None``: report nothing).

    Args:
        progress: ``None`` (a bar when stderr is a terminal), ``True``, ``False`` or a callable.
        description: What the bar is for (``fit``, ``compare``), shown before the label.
    """
    if callable(progress):
        yield progress
        return
    if not (sys.stderr.isatty() if progress is None else progress):
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True))
    task = bar.add_task(description, total=None)

    def report(label: str, done: int, total: int) -> None:
        bar.update(task, description=f"{description} {label}", completed=done, total=total)

    with bar:
        yield report
