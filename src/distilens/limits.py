"""Bounded readers: every config, metadata and data reader goes through here.

A file is data, and data can be hostile: a YAML alias bomb (a few hundred bytes that expand
into billions of nodes), a list nested 20,000 deep (Python's parsers recurse and die with
``RecursionError``), a CSV cell of megabytes, a PNG that claims 50,000 × 50,000 pixels. Each
reader here checks the bound *before* the expensive step and raises a one-line
:class:`~distilens.errors.DistilensError` that names the file and the limit.

The limits are constants of this module, far above what a real config or data file needs:

========================  =========================================================
``MAX_CONFIG_BYTES``      size of a YAML config file (4 MiB)
``MAX_NODES``             YAML nodes after alias expansion (100,000)
``MAX_DEPTH``             nesting of lists/mappings in YAML and JSON (100)
``MAX_JSON_BYTES``        a JSON metadata file of a run folder (64 MiB)
``MAX_CSV_FIELD``         characters in one CSV cell (131,072, Python's csv default)
``MAX_IMAGE_PIXELS``      width × height of one image (Pillow's default, 89,478,485)
========================  =========================================================

Example:
    >>> load_yaml("a: [1, 2]", "config.yaml")
    {'a': [1, 2]}
"""

from __future__ import annotations

import csv
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from PIL import Image

from .errors import ConfigError, DataError, DistilensError

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_NODES",
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_CSV_FIELD",
    "MAX_IMAGE_PIXELS",
    "IMAGE_ERRORS",
    "load_yaml",
    "read_text",
    "loads_json",
    "read_json",
    "check_depth",
    "csv_reader",
    "open_image",
    "check_safetensors",
]

MAX_CONFIG_BYTES = 4 * 1024**2
MAX_NODES = 100_000
MAX_DEPTH = 100
MAX_JSON_BYTES = 64 * 1024**2
MAX_CSV_FIELD = 131_072
MAX_IMAGE_PIXELS = 89_478_485

# The one list of what Pillow raises on a file that is not an image, is cut short, or is a
# decompression bomb (open_image turns Pillow's bomb *warning* into the error too).
IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

_ErrorType = type[DistilensError]


def read_text(path: str | Path, where: str, *, max_bytes: int, error: _ErrorType = ConfigError) -> str:
    """The UTF-8 text of ``path``, refused before reading when it is over ``max_bytes``.

    Raises:
        error: missing file, a folder, too large, unreadable, or not UTF-8.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{where}: cannot read it ({exc.strerror}); check the path") from None
    if not path.is_file():
        raise error(f"{where}: not a file; give the path of a file")
    if size > max_bytes:
        raise error(f"{where}: {size:,} bytes, over the limit of {max_bytes:,} for this kind of file; "
                    "check that it is the right file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                    "give a text file saved as UTF-8") from None


# --------------------------------------------------------------------------- YAML


def load_yaml(text: str, where: str, *, error: _ErrorType = ConfigError) -> Any:
    """``yaml.safe_load(text)`` after checking size, depth and alias expansion on the event stream.

    PyYAML's parser is a state machine (no recursion), so the events are read first and
    counted: nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes once
    every alias is expanded (the "billion laughs"), or an alias inside its own anchor (a
    self-containing list) is refused before anything is built.

    Raises:
        error: YAML syntax error (with its line), or a limit exceeded.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise error(f"{where}: {len(text):,} characters of YAML, over the limit of {MAX_CONFIG_BYTES:,}; "
                    "a config is a few kilobytes")
    try:
        _check_yaml_events(text, where, error)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"{where}: YAML syntax error{line}: {problem}; fix the YAML") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        what = str(exc).split(";")[0].split(":")[0][:120]
        raise error(f"{where}: a value cannot be read ({what}); write a shorter value") from None


def _check_yaml_events(text: str, where: str, error: _ErrorType) -> None:
    sizes: dict[str, int] = {}  # anchor -> nodes of its expanded subtree
    stack: list[list[Any]] = [[0, None]]  # [nodes so far, anchor] of each open collection
    open_anchors: set[str] = set()

    def add(n: int) -> None:
        stack[-1][0] += n
        if stack[-1][0] > MAX_NODES:
            raise error(f"{where}: the YAML expands to more than {MAX_NODES:,} values (aliases such as *a repeat "
                        "what they point to); write the values out instead of nesting aliases")

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise error(f"{where}: alias *{event.anchor} refers to the list or mapping it is inside of; "
                            "remove the self-reference")
            add(sizes.get(event.anchor, 1))
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(stack) > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise error(f"{where}: lists and mappings nested more than {MAX_DEPTH} deep (line {line}); "
                            "flatten the structure")
            if event.anchor:
                open_anchors.add(event.anchor)
            stack.append([1, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            n, anchor = stack.pop()
            if anchor:
                sizes[anchor] = n
                open_anchors.discard(anchor)
            add(n)


# --------------------------------------------------------------------------- JSON


def check_depth(obj: Any, where: str, *, max_depth: int = MAX_DEPTH, error: _ErrorType = DataError) -> Any:
    """Return ``obj`` when its lists and dicts nest at most ``max_depth`` deep (checked without recursion)."""
    todo: list[tuple[Any, int]] = [(obj, 0)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (list, tuple, dict)):
            if depth >= max_depth:
                raise error(f"{where}: lists and objects nested more than {max_depth} deep; flatten the structure")
            children = node.values() if isinstance(node, dict) else node
            todo.extend((child, depth + 1) for child in children)
    return obj


def loads_json(text: str, where: str, *, max_depth: int = MAX_DEPTH, error: _ErrorType = DataError) -> Any:
    """``json.loads`` with nesting bounded by ``max_depth`` (no ``RecursionError`` ever reaches the user).

    Raises:
        error: invalid JSON (with line and column) or nesting too deep.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                    "it may be cut short or edited by hand") from None
    except RecursionError:
        raise error(f"{where}: lists and objects nested more than {max_depth} deep; flatten the structure") from None
    return check_depth(obj, where, max_depth=max_depth, error=error)


def read_json(path: str | Path, where: str | None = None, *, error: _ErrorType = DataError,
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path``: size, UTF-8, syntax and depth checked (see :func:`loads_json`)."""
    where = where or f"'{path}'"
    return loads_json(read_text(path, where, max_bytes=max_bytes, error=error), where, error=error)


# --------------------------------------------------------------------------- safetensors

_MAX_SAFETENSORS_HEADER = 100 * 1024**2  # the safetensors format's own limit


def check_safetensors(path: str | Path, where: str | None = None, *, error: _ErrorType = DataError) -> None:
    """Check a .safetensors file's header against its size without reading the tensors (or importing torch).

    The header must be a JSON object (bounded size and depth) whose tensors' byte ranges lie
    inside the file and cover the data exactly: a file cut short or padded is refused.

    Raises:
        error: not a complete safetensors file.
    """
    path = Path(path)
    where = where or f"'{path}'"
    bad = f"{where} is not a complete safetensors file (cut short, or another format)"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise error(bad)
        n = int.from_bytes(head, "little")
        if n > _MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise error(bad)
        try:
            header = loads_json(f.read(n).decode("utf-8"), where, error=error)
        except UnicodeDecodeError:
            raise error(bad) from None
    if not isinstance(header, dict):
        raise error(bad)
    ends = [0]
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise error(bad)
        ends.append(offsets[1])
    if max(ends) != size - 8 - n:
        raise error(bad)


# --------------------------------------------------------------------------- CSV


class csv_reader:  # noqa: N801 - used like csv.reader
    """``csv.reader(lines, delimiter=...)`` whose errors (a cell over :data:`MAX_CSV_FIELD`
    characters, a stray quote) are one-line ``error``s naming ``where`` and the line.

    Example:
        >>> reader = csv_reader(text.splitlines(keepends=True), "loans.csv", delimiter=",")
        >>> header = next(reader); reader.line_num
        1
    """

    def __init__(self, lines: Iterable[str], where: str, *, delimiter: str = ",", error: _ErrorType = DataError) -> None:
        csv.field_size_limit(MAX_CSV_FIELD)  # the documented limit, whatever another library set
        self._reader = csv.reader(lines, delimiter=delimiter)
        self._where, self._error = where, error

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self._reader)
        except csv.Error as exc:
            line = self._reader.line_num
            if "field larger than field limit" in str(exc):
                raise self._error(f"{self._where} line {line}: a cell is longer than {MAX_CSV_FIELD:,} characters; "
                                  "shorten it (or check for an unclosed quote)") from None
            raise self._error(f"{self._where} line {line}: {exc}; fix the quoting") from None


# --------------------------------------------------------------------------- images


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` refusing more than :data:`MAX_IMAGE_PIXELS` pixels before any decoding.

    Raises:
        PIL.Image.DecompressionBombError: the header announces too many pixels (one of
            :data:`IMAGE_ERRORS`, as are Pillow's errors on files that are not images).
    """
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; here that is an error too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except Image.DecompressionBombWarning as exc:
            raise Image.DecompressionBombError(str(exc)) from None
    with img:
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(
                f"{w} × {h} = {w * h:,} pixels is over the limit of {MAX_IMAGE_PIXELS:,} (a decompression bomb?)"
            )
        yield img
