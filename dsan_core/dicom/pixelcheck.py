"""A cheap check that a file's pixel data is present and complete.

`dcmread(..., stop_before_pixels=True)` leaves the file positioned at the start of
the top-level pixel data element (or at the end of the file when there is none).
From there we read the element header only: for native (uncompressed) data the
declared length must fit in the file and hold rows x columns x frames x samples
x bits; encapsulated data must end with a sequence delimiter. The pixel bytes
themselves are never read, so indexing stays header-only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from dsan_core.dicom import reasons

_PIXEL_TAGS = {
    0x7FE00010: "PixelData",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
}
_LONG_VRS = {
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"
}
_UNDEFINED = 0xFFFFFFFF
_SEQ_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQ_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
#: Trailing bytes searched for the encapsulated sequence delimiter (allows dataset padding).
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class PixelCheck:
    """Outcome of `check_pixel_element`: `reason` is None when the data looks complete."""

    reason: str | None
    message: str
    encapsulated: bool = False


def expected_native_bytes(
    rows: int, columns: int, frames: int, samples: int, bits: int, photometric: str = ""
) -> int:
    """Bytes needed by native pixel data (bit-packed when `bits` is 1)."""
    n_values = rows * columns * frames * samples
    if photometric == "YBR_FULL_422":
        n_values = n_values * 2 // 3  # chroma is subsampled 2:1 horizontally
    if bits == 1:
        return (n_values + 7) // 8
    return n_values * ((bits + 7) // 8)


def check_pixel_element(
    fp: BinaryIO,
    *,
    file_size: int,
    implicit_vr: bool,
    little_endian: bool,
    expected_bytes: int,
) -> PixelCheck:
    """Inspect the element at the current position of `fp` (see module docstring)."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return PixelCheck(reasons.NO_PIXEL_DATA, "the file has no pixel data element")
    order = "<" if little_endian else ">"
    group, element = struct.unpack(order + "HH", head[:4])
    tag = (group << 16) | element
    if tag not in _PIXEL_TAGS:
        return PixelCheck(reasons.NO_PIXEL_DATA, "the file has no pixel data element")
    if tag != 0x7FE00010:
        return PixelCheck(
            reasons.NO_PIXEL_DATA,
            f"expected integer PixelData, found {_PIXEL_TAGS[tag]}",
        )
    # Some writers store PixelData implicitly inside an explicit-VR file; pydicom
    # accepts that, so do we: a VR is two upper-case letters.
    if implicit_vr or not (head[4:6].isalpha() and head[4:6].isupper()):
        (length,) = struct.unpack(order + "L", head[4:8])
        header_length = 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return PixelCheck(reasons.TRUNCATED, "the file ends inside the pixel data header")
        (length,) = struct.unpack(order + "L", head[8:12])
        header_length = 12
    else:
        (length,) = struct.unpack(order + "H", head[6:8])
        header_length = 8
    if length == _UNDEFINED:
        return _check_encapsulated(fp, file_size=file_size, little_endian=little_endian)
    value_end = start + header_length + length
    if value_end > file_size:
        return PixelCheck(
            reasons.TRUNCATED,
            f"pixel data declares {length} bytes but the file ends "
            f"{value_end - file_size} bytes early",
        )
    if length < expected_bytes:
        return PixelCheck(
            reasons.TRUNCATED,
            f"pixel data holds {length} bytes, the image needs {expected_bytes}",
        )
    if length == 0:
        return PixelCheck(reasons.NO_PIXEL_DATA, "the pixel data element is empty")
    return PixelCheck(None, "ok")


def _check_encapsulated(fp: BinaryIO, *, file_size: int, little_endian: bool) -> PixelCheck:
    tail_start = max(fp.tell(), file_size - _TAIL_BYTES)
    fp.seek(tail_start)
    tail = fp.read()
    delimiter = _SEQ_DELIMITER_LE if little_endian else _SEQ_DELIMITER_BE
    if delimiter not in tail:
        return PixelCheck(
            reasons.TRUNCATED,
            "encapsulated pixel data has no sequence delimiter at the end of the file",
            encapsulated=True,
        )
    return PixelCheck(None, "ok", encapsulated=True)
