"""The Preprocessor protocol: how a user's files become model inputs, saved as one JSON file.

Every kind of data has one preprocessor class (:class:`~distilens.data.image_io.ImagePreprocessor`,
:class:`~distilens.data.table.TablePreprocessor`, :class:`~distilens.data.text.TextPreprocessor`),
fitted when the data is loaded (``bundle.preprocessing``), written into the run folder as
``preprocessing.json`` by :meth:`Preprocessor.save` and read back by
:meth:`Preprocessor.load` (or :func:`distilens.data.load_preprocessing`, which picks the
class from the file). :meth:`Preprocessor.read` applies exactly the training preprocessing
to new files at prediction time.

Example:
    >>> bundle.preprocessing.save("runs/x")
    >>> pre = load_preprocessing("runs/x")
    >>> inputs = pre.read("new.csv")
    >>> inputs.names[0], inputs.batch(0, 64).shape
    ('new.csv:row 2', torch.Size([5, 12]))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

from torch import Tensor

from ..errors import DataError
from ..io import atomic_write_json
from .bundle import InputSpec

__all__ = [
    "PREPROCESSING_FILE",
    "Preprocessor",
    "PredictionInputs",
    "SavedAsJson",
    "read_preprocessing",
    "check_format",
    "existing_input",
]

PREPROCESSING_FILE = "preprocessing.json"

P = TypeVar("P", bound="SavedAsJson")


class PredictionInputs:
    """What :meth:`Preprocessor.read` returns: one source name per input, inputs batch by batch.

    Inputs are made when a batch is asked for (image files are decoded then), so a large
    folder never needs to fit in memory at once.

    Args:
        names: One source name per input, in order (``a.png``, ``new.csv:row 2``, ...).
        load: ``load(start, stop)`` → (stop − start, *spec.shape) model inputs of those rows.

    Example:
        >>> inputs = PredictionInputs(["a", "b"], lambda i, j: torch.zeros(j - i, 3))
        >>> len(inputs), inputs.batch(0, 2).shape
        (2, torch.Size([2, 3]))
    """

    def __init__(self, names: Sequence[str], load: Callable[[int, int], Tensor]) -> None:
        self.names = list(names)
        self._load = load

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, start: int, stop: int) -> Tensor:
        """Model inputs of rows ``start`` to ``stop`` (clipped to the end)."""
        return self._load(start, min(stop, len(self.names)))

    def all(self) -> Tensor:
        """Model inputs of every row, (N, *spec.shape)."""
        return self.batch(0, len(self.names))


@runtime_checkable
class Preprocessor(Protocol):
    """Turns a user's files into model inputs exactly as training did; saved as ``preprocessing.json``.

    Attributes:
        kind: The :attr:`InputSpec.kind` it makes inputs for (``"image"``, ``"table"``, ``"text"``).
    """

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (with a ``format`` key naming the kind and version)."""
        ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], folder: str | Path | None = None) -> "Preprocessor":
        """The inverse of :meth:`to_dict`; ``folder`` holds files the description names (tokenizers)."""
        ...

    @classmethod
    def from_spec(cls, spec: InputSpec, folder: str | Path | None = None, *, text_column: str | None = None) -> "Preprocessor":
        """What a model's spec (and the run folder's other files) describe, for run folders from
        before ``preprocessing.json``; a one-line DataError where that is not enough."""
        ...

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/preprocessing.json`` atomically (and any file it names); its path."""
        ...

    @classmethod
    def load(cls, folder: str | Path) -> "Preprocessor":
        """Read what :meth:`save` wrote in ``folder``."""
        ...

    def read(self, path: str | Path) -> PredictionInputs:
        """A user's prediction input (a file or folder) as model inputs, one source name per row.

        Raises:
            DataError: one line saying what is wrong with the input.
        """
        ...


class SavedAsJson:
    """:meth:`save` and :meth:`load` for a preprocessor with ``to_dict``/``from_dict`` (a mixin)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[P], d: Mapping[str, Any], folder: str | Path | None = None) -> P:
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/preprocessing.json`` atomically; its path."""
        return atomic_write_json(Path(folder) / PREPROCESSING_FILE, self.to_dict())

    @classmethod
    def load(cls: type[P], folder: str | Path) -> P:
        """Read ``folder/preprocessing.json`` written by :meth:`save`.

        Raises:
            DataError: the file is missing, not JSON, of another kind or incomplete.
        """
        d = read_preprocessing(folder)
        try:
            return cls.from_dict(d, folder)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"'{Path(folder) / PREPROCESSING_FILE}' is incomplete or damaged ({exc!r}); train the run again") from None


def read_preprocessing(folder: str | Path) -> dict[str, Any]:
    """The JSON object in ``folder/preprocessing.json``.

    Raises:
        DataError: the file is missing, not UTF-8 JSON, or not an object.
    """
    path = Path(folder) / PREPROCESSING_FILE
    if not path.is_file():
        raise DataError(f"'{path}' not found; a run folder holds the preprocessing its model was trained with")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{path}' is not valid JSON ({exc}); train the run again") from None
    if not isinstance(d, dict):
        raise DataError(f"'{path}' holds a JSON {type(d).__name__}, not a preprocessing description")
    return d


def check_format(d: Mapping[str, Any], expected: str, kind: str) -> None:
    """Raise a DataError unless ``d["format"]`` is ``expected`` (a ``kind`` preprocessing description)."""
    if d.get("format") != expected:
        raise DataError(f"not a distilens {kind} preprocessing description (format {d.get('format')!r})")


def existing_input(path: str | Path, what: str) -> Path:
    """``path`` as a Path; a DataError naming ``what`` to give when it does not exist."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"prediction input '{path}' does not exist; give {what}")
    return path
