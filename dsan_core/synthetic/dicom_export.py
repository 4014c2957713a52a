"""Write phantoms as a PACS-like DICOM export: one file per slice, explicit VR little endian.

Volumes are (z, y, x) HU with slice 0 the most inferior; ImageOrientationPatient is
(1, 0, 0, 0, 1, 0), so rows run along +x and columns along +y (LPS), and
ImagePositionPatient z grows with the slice index. Pixels are stored as HU + 1024
(RescaleSlope 1, RescaleIntercept -1024), as uint16 or int16 per site.

One template Dataset is built per series and only the per-slice tags change, which
keeps writing fast. Every file is written to a temporary name in its folder and then
moved into place with os.replace, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from dsan_core.synthetic.cohort import PatientPlan, StudyPlan
from dsan_core.synthetic.sites import SiteProfile
from dsan_core.synthetic.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, make_uid

HU_OFFSET = 1024


@dataclass(frozen=True)
class SeriesSpec:
    """What distinguishes one series of a study."""

    number: int
    description: str
    image_type: tuple[str, ...]
    window: tuple[float, float]  # centre, width


def ds_str(value: float) -> str:
    """A DS (decimal string) of at most 16 characters, without float noise."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def stored_pixels(
    hu: NDArray[np.int16], site: SiteProfile
) -> NDArray[np.int16] | NDArray[np.uint16]:
    """HU -> stored values (HU + 1024), clipped to the site's representable range."""
    value = hu.astype(np.int32) + HU_OFFSET
    if site.signed:
        hi = 2 ** (site.bits_stored - 1) - 1
        return np.clip(value, -hi - 1, hi).astype(np.int16)
    return np.clip(value, 0, 2**site.bits_stored - 1).astype(np.uint16)


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _da(day: date) -> str:
    return day.strftime("%Y%m%d")


def base_dataset(
    patient: PatientPlan, study: StudyPlan, site: SiteProfile, modality: str, sop_class: str
) -> Dataset:
    """Patient, study, equipment and general-series tags shared by a study's series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = _da(study.study_date)
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = modality
    ds.Manufacturer = site.manufacturer
    ds.InstitutionName = site.institution
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StationName = f"CT{site.name.upper()[-1:]}01"
    ds.StudyDescription = "CT CHEST"
    ds.ManufacturerModelName = site.model
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = _da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{study.age_years:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.SoftwareVersions = site.software
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyID = study.study_id
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    return ds


def ct_series_template(
    patient: PatientPlan,
    study: StudyPlan,
    site: SiteProfile,
    spec: SeriesSpec,
    *,
    rows: int,
    columns: int,
    pixel_spacing: tuple[float, float],
    orientation: tuple[float, ...],
    slice_thickness: float | None,
) -> Dataset:
    """A CT image dataset with every tag but the per-slice ones filled in."""
    ds = base_dataset(patient, study, site, "CT", CTImageStorage)
    ds.ImageType = list(spec.image_type)
    ds.SeriesDescription = spec.description
    ds.KVP = ds_str(site.kvp)
    ds.ConvolutionKernel = site.kernel
    ds.PatientPosition = "HFS"
    ds.SeriesInstanceUID = study.series_uid(spec.number)
    ds.SeriesNumber = spec.number
    ds.AcquisitionNumber = 1
    ds.GantryDetectorTilt = "0"
    ds.ImageOrientationPatient = [ds_str(v) for v in orientation]
    if slice_thickness is not None:
        ds.SliceThickness = ds_str(slice_thickness)
        ds.SpacingBetweenSlices = ds_str(slice_thickness)
        ds.ReconstructionDiameter = ds_str(columns * pixel_spacing[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [ds_str(pixel_spacing[0]), ds_str(pixel_spacing[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = site.bits_stored
    ds.HighBit = site.bits_stored - 1
    ds.PixelRepresentation = 1 if site.signed else 0
    ds.WindowCenter = ds_str(spec.window[0])
    ds.WindowWidth = ds_str(spec.window[1])
    ds.RescaleIntercept = str(-HU_OFFSET)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def encode(ds: Dataset) -> bytes:
    """The file bytes (preamble, file meta, dataset) of `ds`."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def write_axial_series(
    folder: Path,
    template: Dataset,
    study: StudyPlan,
    stored: NDArray[np.int16] | NDArray[np.uint16],
    positions: list[tuple[float, float, float]],
    *,
    skip: frozenset[int] = frozenset(),
    first: int = 0,
) -> list[Path]:
    """Write slices `stored[i]` at `positions[i]` (x, y, z mm) as IM<first + i + 1>.dcm.

    `first` is the series index of `stored[0]`, so a series can be written a slab at a
    time; series indices in `skip` are left out (their instance numbers stay unused).
    """
    paths = []
    series_number = int(template.SeriesNumber)
    for i in range(stored.shape[0]):
        k = first + i
        if k in skip:
            continue
        uid = make_uid(study.seed[0], 3, study.number, series_number, k + 1)
        template.file_meta = _file_meta(template.SOPClassUID, uid)
        template.SOPInstanceUID = uid
        template.InstanceNumber = k + 1
        template.ImagePositionPatient = [ds_str(v) for v in positions[i]]
        template.SliceLocation = ds_str(positions[i][2])
        template.PixelData = np.ascontiguousarray(stored[i]).tobytes()
        path = folder / f"IM{k + 1:04d}.dcm"
        atomic_write_bytes(path, encode(template))
        paths.append(path)
    return paths


def write_secondary_capture(
    folder: Path,
    patient: PatientPlan,
    study: StudyPlan,
    site: SiteProfile,
    series_number: int,
    image: NDArray[np.uint8],
) -> Path:
    """A one-image OT secondary capture (e.g. a dose-report screenshot): not CT."""
    ds = base_dataset(patient, study, site, "OT", SecondaryCaptureImageStorage)
    uid = make_uid(study.seed[0], 3, study.number, series_number, 1)
    ds.file_meta = _file_meta(SecondaryCaptureImageStorage, uid)
    ds.SOPInstanceUID = uid
    ds.SeriesInstanceUID = study.series_uid(series_number)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "DOSE REPORT"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(image).tobytes()
    path = folder / "IM0001.dcm"
    atomic_write_bytes(path, encode(ds))
    return path


def truncate_file(path: Path, keep_fraction: float = 0.5) -> None:
    """Cut a written DICOM file in the middle of its pixel data (a broken transfer)."""
    data = path.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    pixel_bytes = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    cut = len(data) - int(pixel_bytes * (1.0 - keep_fraction))
    atomic_write_bytes(path, data[:cut])
