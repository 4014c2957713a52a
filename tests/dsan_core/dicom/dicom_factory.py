"""Tiny synthetic CT DICOM files for the dsan_core.dicom tests (pydicom Dataset + FileMeta)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.999."


def write_slice(
    path: Path,
    *,
    study: str = "1",
    series: str = "1",
    sop: str = "1",
    patient: str = "PAT-001",
    modality: str = "CT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: Sequence[float] = (0.7, 0.7),
    thickness: float | None = 1.0,
    pixels: np.ndarray | None = None,
    rows: int = 8,
    columns: int = 8,
    signed: bool = True,
    bits_stored: int = 16,
    slope: float = 1.0,
    intercept: float = -1024.0,
    padding: int | None = None,
    series_number: int = 1,
    description: str = "",
    instance: int = 1,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one uncompressed CT slice; `pixels` are stored values (rows, columns)."""
    if pixels is None:
        pixels = np.full((rows, columns), 1024, dtype=np.int16 if signed else np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(ROOT + "3." + sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ROOT + "3." + sop
    ds.StudyInstanceUID = ROOT + "1." + study
    ds.SeriesInstanceUID = ROOT + "2." + series
    ds.PatientID = patient
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "050Y"
    ds.StudyDate = "20200301"
    ds.Modality = modality
    ds.ImageType = list(image_type)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    if thickness is not None:
        ds.SliceThickness = thickness
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if padding is not None:
        ds.PixelPaddingValue = padding
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    container = np.int16 if signed else np.uint16
    ds.PixelData = np.ascontiguousarray(pixels.astype(container)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    n_slices: int,
    *,
    spacing: float = 1.0,
    tilt_deg: float = 0.0,
    skip: Sequence[int] = (),
    repeat: Sequence[int] = (),
    z_override: dict[int, float] | None = None,
    series: str = "1",
    **kwargs: Any,
) -> list[Path]:
    """Write an axial stack; `tilt_deg` shears positions in y (a tilted gantry).

    `skip` leaves slice indices out (missing slices), `repeat` writes a second
    instance at the same position, `z_override` moves given slices.
    """
    paths: list[Path] = []
    shear = math.tan(math.radians(tilt_deg))
    for k in range(n_slices):
        if k in skip:
            continue
        z = (z_override or {}).get(k, k * spacing)
        position = (0.0, z * shear, z)
        copies = 2 if k in repeat else 1
        for copy in range(copies):
            sop = f"{series}.{k}.{copy}"
            paths.append(write_slice(folder / f"s{series}_{k:03d}_{copy}.dcm", series=series,
                                     sop=sop, position=position, instance=k + 1, **kwargs))
    return paths
