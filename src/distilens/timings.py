"""Wall-clock seconds per named part of a job, summed over its visits: the run's stages, the explain stage's parts.

Example:
    >>> t = Timings()
    >>> with t.timed("data"):
    ...     load()
    >>> t.to_json()
    {'data': 0.012}
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["Timings"]


@dataclass
class Timings:
    """Wall-clock seconds per part, summed over its visits (``timing_s`` and ``explanations.timing_s`` of metrics.json)."""

    seconds: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to ``seconds[name]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def finish(self) -> None:
        """Record ``total``: the time since the run started."""
        self.seconds["total"] = time.perf_counter() - self.start

    def to_json(self) -> dict[str, float]:
        """The seconds, rounded to milliseconds."""
        return {k: round(v, 3) for k, v in self.seconds.items()}
