"""Read one DICOM file's header into a `HeaderRecord`, header only.

Positions and orientations are in the patient coordinate system (mm), as DICOM
stores them; `pixel_spacing` keeps DICOM's order (row spacing, column spacing),
i.e. (y, x). Raw identifiers (UIDs, patient id, path) are kept in memory only:
`dsan_core.dicom.pseudonym.pseudonymise_frame` replaces them before any table
is written. Patient names and birth dates are never read into the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dsan_core.dicom import reasons
from dsan_core.dicom.codecs import can_decode
from dsan_core.dicom.pixelcheck import check_pixel_element, expected_native_bytes
from dsan_core.errors import DicomError

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True)
class HeaderRecord:
    """What series choice, geometry checks and the privacy-safe tables need from one file."""

    path: Path
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    #: ImageType values joined with "\\", upper case ("" when absent).
    image_type: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    #: (row spacing, column spacing) mm, DICOM order.
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    spacing_between_slices: float | None
    gantry_tilt: float | None
    rows: int
    columns: int
    number_of_frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    rescale_slope: float
    rescale_intercept: float
    padding_value: int | None
    manufacturer: str
    #: DICOM dates as "YYYYMMDD" ("" when absent).
    study_date: str
    acquisition_date: str
    patient_age: str
    patient_sex: str
    file_size: int
    transfer_syntax: str


def _fail(reason: str, message: str, scan: str | None) -> DicomError:
    return DicomError(message, scan=scan, reason=reason)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # malformed values raise from pydicom's lazy conversion
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _number(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)
    except Exception:  # a malformed number is a missing value, not a bad file
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    number = _number(ds, keyword)
    return None if number is None else int(number)


def _floats(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        value = ds.get(keyword)
        if value is None:
            return None
        values = tuple(float(v) for v in value)
    except Exception:  # malformed multi-values are missing, not a bad file
        return None
    return values if len(values) == count else None


def _required_int(ds: Dataset, keyword: str, scan: str | None) -> int:
    if keyword not in ds or ds[keyword].value in (None, ""):
        raise _fail(reasons.MISSING_TAG, f"required tag {keyword} is absent or empty", scan)
    value = _int(ds, keyword)
    if value is None:
        raise _fail(reasons.BAD_VALUE, f"tag {keyword} is not a number", scan)
    return value


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    declared = meta.get("TransferSyntaxUID") if meta is not None else None
    if declared:
        return str(declared)
    implicit, little = ds.original_encoding
    if implicit:
        return str(dicom_uid.ImplicitVRLittleEndian)
    return str(dicom_uid.ExplicitVRLittleEndian if little else dicom_uid.ExplicitVRBigEndian)


def _parse(fp: Any, scan: str | None) -> Dataset:
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        pass  # no preamble / meta: real exports have such files, retry leniently below
    except Exception as error:  # pydicom raises arbitrary errors on malformed real-world files
        message = f"cannot parse DICOM ({type(error).__name__})"
        raise _fail(reasons.NOT_DICOM, message, scan) from None
    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except Exception as error:  # pydicom raises arbitrary errors on malformed real-world files
        message = f"cannot parse DICOM ({type(error).__name__})"
        raise _fail(reasons.NOT_DICOM, message, scan) from None
    # force=True parses almost any bytes: demand a plausible identifying element.
    if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise _fail(reasons.NOT_DICOM, "no DICOM preamble and no SOP identifiers", scan)
    return ds


def read_header(path: Path, *, scan: str | None = None) -> HeaderRecord:
    """Read `path`'s header and check its pixel data cheaply; raise `DicomError(reason=...)`.

    `scan` is an optional pseudonymous name used in error messages; the path itself
    never appears in a message. Reason codes: `dsan_core.dicom.reasons`.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(reasons.NOT_A_FILE, "expected a regular file, found none", scan)
    try:
        file_size = os.path.getsize(path)
        fp = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as error:
        raise _fail(reasons.UNREADABLE, f"cannot open the file ({error.strerror})", scan) from None
    try:
        ds = _parse(fp, scan)
        return _record(ds, fp, path=path, file_size=file_size, scan=scan)
    finally:
        fp.close()


def _record(ds: Dataset, fp: Any, *, path: Path, file_size: int, scan: str | None) -> HeaderRecord:
    meta = getattr(ds, "file_meta", Dataset())
    sop_class = _text(ds, "SOPClassUID") or _text(meta, "MediaStorageSOPClassUID")
    if sop_class == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise _fail(reasons.NON_IMAGE, "a DICOMDIR, not an image", scan)
    syntax = _transfer_syntax(ds)
    if "Rows" not in ds or "Columns" not in ds:
        _raise_without_matrix(ds, fp, syntax=syntax, file_size=file_size, sop_class=sop_class,
                              scan=scan)
    rows = _required_int(ds, "Rows", scan)
    columns = _required_int(ds, "Columns", scan)
    bits_allocated = _required_int(ds, "BitsAllocated", scan)
    frames = _int(ds, "NumberOfFrames") or 1
    samples = _int(ds, "SamplesPerPixel") or 1
    photometric = _text(ds, "PhotometricInterpretation").upper()
    expected = expected_native_bytes(rows, columns, frames, samples, bits_allocated, photometric)
    pixel_check = _pixel_check(ds, fp, syntax=syntax, file_size=file_size, expected=expected)
    if pixel_check is not None:
        raise _fail(pixel_check[0], pixel_check[1], scan)
    for keyword in _REQUIRED_UIDS:
        if not _text(ds, keyword):
            raise _fail(reasons.MISSING_TAG, f"required tag {keyword} is absent or empty", scan)
    if not can_decode(syntax):
        name = dicom_uid.UID(syntax).name
        raise _fail(reasons.UNSUPPORTED_TRANSFER_SYNTAX,
                    f"no installed decoder for transfer syntax '{name}'", scan)
    padding = _int(ds, "PixelPaddingValue")
    return HeaderRecord(
        path=path,
        patient_id=_text(ds, "PatientID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        modality=_text(ds, "Modality").upper(),
        image_type=_text(ds, "ImageType").upper(),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        instance_number=_int(ds, "InstanceNumber"),
        image_position=_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        image_orientation=_floats(ds, "ImageOrientationPatient", 6),  # type: ignore[arg-type]
        pixel_spacing=_floats(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
        slice_thickness=_number(ds, "SliceThickness"),
        spacing_between_slices=_number(ds, "SpacingBetweenSlices"),
        gantry_tilt=_number(ds, "GantryDetectorTilt"),
        rows=rows,
        columns=columns,
        number_of_frames=frames,
        samples_per_pixel=samples,
        bits_allocated=bits_allocated,
        bits_stored=_int(ds, "BitsStored") or bits_allocated,
        pixel_representation=_int(ds, "PixelRepresentation") or 0,
        photometric=photometric,
        rescale_slope=_number(ds, "RescaleSlope") or 1.0,
        rescale_intercept=_number(ds, "RescaleIntercept") or 0.0,
        padding_value=padding,
        manufacturer=_text(ds, "Manufacturer"),
        study_date=_text(ds, "StudyDate"),
        acquisition_date=_text(ds, "AcquisitionDate") or _text(ds, "SeriesDate"),
        patient_age=_text(ds, "PatientAge"),
        patient_sex=_text(ds, "PatientSex").upper(),
        file_size=file_size,
        transfer_syntax=syntax,
    )


def _raise_without_matrix(ds: Dataset, fp: Any, *, syntax: str, file_size: int, sop_class: str,
                          scan: str | None) -> NoReturn:
    """Explain a file without Rows/Columns: not an image, an image without pixels, or broken."""
    is_image_class = "Image Storage" in dicom_uid.UID(sop_class).name if sop_class else False
    check = _pixel_check(ds, fp, syntax=syntax, file_size=file_size, expected=0)
    has_pixels = check is None or check[0] == reasons.TRUNCATED
    if has_pixels:
        raise _fail(reasons.MISSING_TAG, "required tag Rows/Columns is absent", scan)
    if is_image_class:
        raise _fail(reasons.NO_PIXEL_DATA, "an image object without pixel data", scan)
    modality = _text(ds, "Modality") or "none"
    raise _fail(reasons.NON_IMAGE, f"not an image (modality {modality})", scan)


def _pixel_check(ds: Dataset, fp: Any, *, syntax: str, file_size: int,
                 expected: int) -> tuple[str, str] | None:
    """Return (reason, message) when the pixel data is absent or incomplete."""
    transfer = dicom_uid.UID(syntax)
    if transfer.is_compressed:
        expected = 0
    if transfer.is_deflated:
        # The body is zlib-compressed, so file offsets mean nothing: read it whole.
        fp.seek(0)
        try:
            full = pydicom.dcmread(fp)
        except Exception:  # pydicom raises arbitrary errors on malformed real-world files
            return reasons.TRUNCATED, "the deflated dataset cannot be inflated completely"
        if "PixelData" not in full:
            return reasons.NO_PIXEL_DATA, "the file has no pixel data element"
        found = len(full.PixelData)
        if found < expected:
            return reasons.TRUNCATED, f"pixel data holds {found} bytes, the image needs {expected}"
        return None
    implicit, little = ds.original_encoding
    check = check_pixel_element(fp, file_size=file_size, implicit_vr=bool(implicit),
                                little_endian=bool(little), expected_bytes=expected)
    if check.reason is None:
        return None
    return check.reason, check.message
