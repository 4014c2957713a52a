"""Walk an export, index every file's header into one DataFrame, and list failures.

`index_headers` is a plain module-level function over a chunk of paths, so it can
be shipped to Dask workers as is. Its DataFrame has one row per readable file and
the columns of `RECORD_COLUMNS`; tuples of `HeaderRecord` are split into scalar
columns (NaN when absent) so that the table maps onto Parquet directly:

    ipp_x, ipp_y, ipp_z            ImagePositionPatient (mm)
    iop_0 .. iop_5                 ImageOrientationPatient (row cosines, column cosines)
    pixel_spacing_row, _col        PixelSpacing (mm), DICOM order (y, x)

`path`, `patient_id` and the raw UIDs stay in memory only (see
`dsan_core.dicom.pseudonym.pseudonymise_frame`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from dsan_core.dicom import reasons
from dsan_core.dicom.headers import HeaderRecord, read_header
from dsan_core.dicom.labels import read_labels
from dsan_core.errors import DicomError, InputError

_TUPLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "image_position": ("ipp_x", "ipp_y", "ipp_z"),
    "image_orientation": tuple(f"iop_{i}" for i in range(6)),
    "pixel_spacing": ("pixel_spacing_row", "pixel_spacing_col"),
}


def _columns() -> tuple[str, ...]:
    names: list[str] = []
    for field in fields(HeaderRecord):
        names.extend(_TUPLE_COLUMNS.get(field.name, (field.name,)))
    return tuple(names)


#: Columns of the `index_headers` DataFrame, in order.
RECORD_COLUMNS: tuple[str, ...] = _columns()
IPP_COLUMNS = _TUPLE_COLUMNS["image_position"]
IOP_COLUMNS = _TUPLE_COLUMNS["image_orientation"]


@dataclass(frozen=True)
class FileFailure:
    """A file that yields no record. `path` is for in-memory use only; `message` has no PHI."""

    path: Path
    reason: str
    message: str


def discover_files(root: Path) -> list[Path]:
    """Every regular file under `root`, recursively, sorted; hidden files included.

    DICOM exports often have no file extensions, so nothing is filtered by name:
    `read_header` decides what each file is.
    """
    found: list[Path] = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                found.append(path)
    return sorted(found)


def _require_folder(path: Path, expected: str, reason: str) -> None:
    if not path.is_dir():
        raise InputError(f"expected {expected}, found "
                         + ("a file" if path.exists() else "nothing there"), reason=reason)


def check_export(dicom_root: Path, labels: Path | None = None, masks: Path | None = None,
                 *, dicom_option: str = "--dicom-root") -> None:
    """What can be checked of an export before any work (a command calls it before it
    starts Prefect, so a mistyped path costs no server start and no header scan): the
    DICOM root and the masks are folders, the labels manifest (when given) is a readable
    CSV with the required columns (`read_labels`). InputError otherwise."""
    _require_folder(dicom_root, f"a folder as the DICOM root ({dicom_option})", "no_export")
    if labels is not None:
        read_labels(labels)
    if masks is not None:
        _require_folder(masks, "a folder of masks (--masks)", "no_masks")


def list_export(root: Path) -> list[Path]:
    """`discover_files` of a DICOM export folder; InputError when it is not a folder or
    holds no file at all (nothing to ingest is the user's mistake, not an empty run)."""
    _require_folder(root, "a folder as the DICOM root (--dicom-root)", "no_export")
    files = discover_files(root)
    if not files:
        raise InputError("no DICOM files under the DICOM root: the folder is empty",
                         reason="empty_export")
    return files


def _row(record: HeaderRecord) -> dict[str, Any]:
    row = asdict(record)
    for name, columns in _TUPLE_COLUMNS.items():
        values = row.pop(name)
        for i, column in enumerate(columns):
            row[column] = math.nan if values is None else float(values[i])
    return row


def records_to_frame(records: Iterable[HeaderRecord]) -> pd.DataFrame:
    """Records as a DataFrame with `RECORD_COLUMNS` (empty frames keep the columns)."""
    rows = [_row(record) for record in records]
    frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    for column in ("series_number", "instance_number", "padding_value"):
        frame[column] = frame[column].astype("Int64")
    for column in ("slice_thickness", "spacing_between_slices", "gantry_tilt"):
        frame[column] = frame[column].astype("float64")
    return frame


def index_headers(paths: Sequence[Path]) -> tuple[pd.DataFrame, list[FileFailure]]:
    """Read every header in `paths`: (records DataFrame, failures).

    Each path yields exactly one record row or one `FileFailure`; no file makes it raise.
    """
    records: list[HeaderRecord] = []
    failures: list[FileFailure] = []
    for path in paths:
        try:
            records.append(read_header(Path(path)))
        except DicomError as error:
            failures.append(FileFailure(Path(path), error.reason, str(error)))
        except Exception as error:  # noqa: BLE001 - one odd real-world file must not sink the rest
            # The exception text may quote the path or header values: keep only its type.
            failures.append(FileFailure(Path(path), reasons.UNREADABLE,
                                        f"unexpected {type(error).__name__} while parsing"))
    return records_to_frame(records), failures
