"""User-facing errors.

A :class:`DistilensError` is a mistake in what the user gave us (a config key, a file, a
name). The CLI prints its message as one line on stderr and exits with code 2; anything
else is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

__all__ = ["DistilensError", "ConfigError", "DataError", "ModelError", "RunFolderError"]


class DistilensError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        # One line: the CLI prints it as is, so fold any newline a caller let through.
        super().__init__(" ".join(str(message).split()))


class ConfigError(DistilensError):
    """The run config (YAML, ``--set`` overrides, or keyword arguments) is invalid."""


class DataError(DistilensError):
    """A data source is missing, unreadable or unsuitable."""


class ModelError(DistilensError):
    """An architecture, its arguments, or a weights file is wrong."""


class RunFolderError(DistilensError):
    """The run folder cannot be used as asked (exists, unwritable, changed config)."""
