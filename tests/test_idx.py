"""The IDX reader on tiny files written here byte by byte: every type, gzip or plain, and damage."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from distilens.data.idx import read_idx
from distilens.errors import DataError

# type code → big-endian numpy type, written out here rather than imported from the reader.
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file: magic 00 00 code ndim, big-endian uint32 sizes, big-endian elements."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(CODES[code]).tobytes()


def write(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("code", sorted(CODES))
def test_every_type_round_trips(tmp_path: Path, code: int, compress: bool) -> None:
    rng = np.random.default_rng(code)
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(CODES[code])
    if code == 0x08:
        array = rng.integers(0, 256, size=(3, 4, 5)).astype(">u1")
    path = write(tmp_path / "a.idx", idx_bytes(array, code), compress)
    out = read_idx(path)
    assert tuple(out.shape) == (3, 4, 5)
    expected = torch.from_numpy(array.astype(array.dtype.newbyteorder("=")))
    assert out.dtype == expected.dtype and torch.equal(out, expected)


def test_one_dimension_and_empty(tmp_path: Path) -> None:
    labels = np.array([9, 0, 0, 3], dtype=np.uint8)
    assert read_idx(write(tmp_path / "l", idx_bytes(labels, 0x08), True)).tolist() == [9, 0, 0, 3]
    assert read_idx(write(tmp_path / "e", idx_bytes(np.zeros((0, 2), np.uint8), 0x08), False)).shape == (0, 2)


def test_gzip_is_told_by_content_not_name(tmp_path: Path) -> None:
    data = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3), 0x08)
    assert read_idx(write(tmp_path / "plain.gz", data, False)).sum() == 15
    assert read_idx(write(tmp_path / "packed", data, True)).sum() == 15


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "shorter than the 4-byte magic"),
        (GOOD[:3], "shorter than the 4-byte magic"),
        (b"\x1a\x00" + GOOD[2:], "not an IDX file: magic number 1a 00 08 03"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown element type code 0x0a"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "declares 0 dimensions"),
        (GOOD[:3] + b"\x09" + GOOD[4:], "declares 9 dimensions"),
        (GOOD[:10], "truncated inside its header"),
        (GOOD[:-1], "needs 24 bytes of data, it holds 23"),
        (GOOD[:16], "needs 24 bytes of data, it holds 0"),
        (GOOD + b"\x00", "has bytes after the 24"),
        (GOOD[:4] + struct.pack(">3I", 2, 3, 5) + GOOD[16:], "needs 30 bytes"),
    ],
)
def test_damaged_headers_and_lengths(tmp_path: Path, data: bytes, message: str, compress: bool) -> None:
    with pytest.raises(DataError, match=message) as info:
        read_idx(write(tmp_path / "bad", data, compress))
    assert "\n" not in str(info.value)


def test_declared_size_is_bounded_before_reading(tmp_path: Path) -> None:
    huge = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)  # ~6e29 bytes
    with pytest.raises(DataError, match="over the limit of"):
        read_idx(write(tmp_path / "huge", huge, False))
    with pytest.raises(DataError, match=r"shape \(2, 3, 4\) \(24 bytes\), over the limit of 23 bytes"):
        read_idx(write(tmp_path / "ok", GOOD, True), max_bytes=23)
    assert read_idx(write(tmp_path / "ok", GOOD, True), max_bytes=24).shape == (2, 3, 4)


def test_damaged_gzip_streams(tmp_path: Path) -> None:
    packed = gzip.compress(GOOD)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_idx(cut)
    no_trailer = tmp_path / "no_trailer.gz"
    no_trailer.write_bytes(packed[:-4])  # the size field missing: the stream ends early
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_idx(no_trailer)
    bad_crc = bytearray(packed)
    bad_crc[-8] ^= 0xFF  # the CRC-32 of the uncompressed data
    crc = tmp_path / "crc.gz"
    crc.write_bytes(bytes(bad_crc))
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_idx(crc)
    flipped = bytearray(packed)
    flipped[12] ^= 0xFF  # inside the deflate data
    bad = tmp_path / "flipped.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="IDX file"):
        read_idx(bad)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(tmp_path)


def test_returned_tensor_owns_writable_memory(tmp_path: Path) -> None:
    out = read_idx(write(tmp_path / "a", GOOD, False))
    out += 1  # a read-only buffer would warn or fail here
    assert int(out[0, 0, 0]) == 1
