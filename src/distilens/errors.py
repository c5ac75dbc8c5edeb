"""User-facing errors.

A :class:`DistilensError` is a mistake in what the user gave us (a config key, a file, a
name). The CLI prints its message as one line on stderr and exits with code 2; anything
else is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import re

__all__ = ["without_unsafe_advice", "DistilensError", "ConfigError", "DataError", "ModelError", "RunFolderError", "DiskFullError"]


class DistilensError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        # One line: the CLI prints it as is, so fold any newline a caller let through.
        super().__init__(without_unsafe_advice(" ".join(str(message).split())))


# Advice that libraries put in their messages and that would weaken safety if a user took it
# (torch: "re-run torch.load with weights_only=False", "add_safe_globals"; transformers:
# "trust_remote_code=True"). distilens never passes it on.
_UNSAFE = re.compile(
    r"weights_only|safe_globals|allowlist|can still be loaded|trusted source|trust the source|"
    r"arbitrary code|trust_remote_code|two options|check the recommended steps|documentation of torch\.load",
    re.I,
)
_SAFE_ADVICE = (
    "distilens never unpickles a file or runs code from it: where you trust the file, re-save the "
    "weights as a state dict (torch.save(model.state_dict(), PATH)) or as safetensors"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def without_unsafe_advice(text: str) -> str:
    """``text`` without the clauses that advise weakening safety, with what to do instead.

    Clauses are cut at parentheses, ``;``, ``:`` and sentence ends; when any is dropped, the
    safe alternative is appended once.

    Example:
        >>> without_unsafe_advice("cannot read x (Weights only load failed. Re-run with weights_only=False.)")
        'cannot read x (Weights only load failed.); distilens never unpickles ...'
    """
    text = _ANSI.sub("", text)
    if not _UNSAFE.search(text):
        return text
    parts = re.split(r"(\(|\)|;\s|:\s|\.\s|\.$)", text)
    kept = "".join("" if _UNSAFE.search(p) else p for p in parts)
    kept = re.sub(r"\(\d\)\s*\.?|\(\[[^()]*\]\)", "", kept)  # torch's "(1)" list marks, "([x.Y])" leftovers
    kept = re.sub(r"\(\s*[.;:\s]*\)", "", kept)  # a parenthesis left empty
    kept = re.sub(r"\s+([.;:)])", r"\1", kept)
    kept = re.sub(r"(\s*[.;:])+(?=\s*[.;:)])", "", kept)  # separators left doubled
    kept = " ".join(kept.split()).rstrip(" ;:")
    if _SAFE_ADVICE in kept:
        return kept
    return f"{kept}; {_SAFE_ADVICE}"


class ConfigError(DistilensError):
    """The run config (YAML, ``--set`` overrides, or keyword arguments) is invalid."""


class DataError(DistilensError):
    """A data source is missing, unreadable or unsuitable."""


class ModelError(DistilensError):
    """An architecture, its arguments, or a weights file is wrong."""


class RunFolderError(DistilensError):
    """The run folder cannot be used as asked (exists, unwritable, changed config)."""


class DiskFullError(RunFolderError):
    """No space left on the device (or quota) while writing a file; the run's partial output is removed."""
