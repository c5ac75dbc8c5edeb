"""What the two row readers (CSV tables, text tables) share: numbers, class names, row lists.

Example:
    >>> sorted_class_names(["10", "2", "2"])
    ['2', '10']
    >>> format_rows([3, 4, 5, 6, 7, 8], limit=2)
    '3, 4 and 4 more'
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["parse_number", "sorted_class_names", "format_rows"]


def parse_number(value: str) -> float | None:
    """``float(value)``, or ``None`` when the text is not a number."""
    try:
        return float(value)
    except ValueError:
        return None


def sorted_class_names(labels: Iterable[str]) -> list[str]:
    """The distinct labels, sorted: numerically when every one is a number ("2" before "10")."""
    unique = set(labels)
    if all(parse_number(v) is not None for v in unique):
        return sorted(unique, key=lambda v: (float(v), v))
    return sorted(unique)


def format_rows(rows: Sequence[int], limit: int = 5) -> str:
    """Row (or line) numbers for a message: the first ``limit``, then how many more."""
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")
