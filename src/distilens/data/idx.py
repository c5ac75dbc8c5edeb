"""A strict reader for IDX files, the format of MNIST and Fashion-MNIST (plain or gzip).

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the
number of dimensions), ``DD`` big-endian uint32 sizes, then the elements, big-endian, in
row-major order (LeCun et al., "The MNIST database", file format section). Everything is
checked: the magic number, the type code, the dimension count, and that the file holds
exactly as many bytes as its header promises, no fewer and no more. Any mismatch, or a
gzip stream that is damaged or cut short, is one line of :class:`~distilens.errors.DataError`.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError

__all__ = ["read_idx", "IDX_DTYPES", "IDX_MAX_BYTES"]

# Type code → big-endian element type (the format's own table).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Default bound on the bytes a file may declare: Fashion-MNIST's largest file is 47 MB.
IDX_MAX_BYTES = 1 << 30
_MAX_DIMS = 8
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, *, max_bytes: int = IDX_MAX_BYTES) -> Tensor:
    """Read one IDX file (``.gz`` or plain, told apart by content) into a tensor.

    Args:
        path: The file.
        max_bytes: Largest element payload the header may declare; a larger one is refused
            before anything is read, so a damaged header cannot make us allocate gigabytes.

    Returns:
        A tensor of the header's shape in native byte order: uint8, int8, int16, int32,
        float32 or float64 as the type code says.

    Raises:
        DataError: Missing or unreadable file, wrong magic number, unknown type code, more
            than 8 dimensions, a payload over ``max_bytes``, fewer or more bytes than the
            header declares, or a damaged gzip stream.

    Example:
        >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
        >>> labels.shape, labels.dtype
        (torch.Size([10000]), torch.uint8)
    """
    path = Path(path)
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw) as stream:
                    return _read_stream(stream, path, max_bytes)
            return _read_stream(raw, path, max_bytes)
    except FileNotFoundError:
        raise DataError(f"IDX file '{path}' does not exist") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"IDX file '{path}' is a damaged or truncated gzip stream ({exc})") from None
    except OSError as exc:
        raise DataError(f"IDX file '{path}' cannot be read ({exc.strerror or exc})") from None


def _read_stream(stream: BinaryIO, path: Path, max_bytes: int) -> Tensor:
    """Parse header and payload from ``stream``; ``path`` is only for messages."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"IDX file '{path}' is truncated: {len(magic)} bytes, shorter than the 4-byte magic number")
    if magic[:2] != b"\x00\x00":
        raise DataError(f"IDX file '{path}' is not an IDX file: magic number {magic.hex(' ')} does not start with 00 00")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise DataError(f"IDX file '{path}' has unknown element type code 0x{code:02x}; known codes: {known}")
    if not 1 <= ndim <= _MAX_DIMS:
        raise DataError(f"IDX file '{path}' declares {ndim} dimensions; 1 to {_MAX_DIMS} are accepted")
    header = stream.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise DataError(f"IDX file '{path}' is truncated inside its header ({ndim} sizes declared)")
    shape = struct.unpack(f">{ndim}I", header)
    dtype = IDX_DTYPES[code]
    count = 1
    for size in shape:
        count *= size  # Python ints: no overflow, however large the declared sizes
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise DataError(
            f"IDX file '{path}' declares shape {tuple(shape)} ({nbytes:,} bytes), over the limit of {max_bytes:,} bytes"
        )
    payload = stream.read(nbytes)
    if len(payload) < nbytes:
        raise DataError(
            f"IDX file '{path}' is truncated: shape {tuple(shape)} needs {nbytes:,} bytes of data, it holds {len(payload):,}"
        )
    if stream.read(1):
        raise DataError(f"IDX file '{path}' has bytes after the {nbytes:,} its header declares for shape {tuple(shape)}")
    # astype copies into native byte order, so the tensor owns writable memory.
    array = np.frombuffer(payload, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(array.reshape(shape))
