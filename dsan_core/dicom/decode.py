"""Decode one series to a Hounsfield-unit volume.

Arrays are (z, y, x); spacing, origin and direction follow SimpleITK: spacing is
(x, y, z) mm, origin the patient position (mm) of voxel (0, 0, 0), direction the
row-major 3x3 matrix whose columns are the x, y, z axis directions.

Decoder choice: pydicom + numpy, file by file. On a 128-slice 512x512 native
int16 series it took 0.26-0.31 s against 0.64-1.03 s for SimpleITK's
ImageSeriesReader (same values; shared 2-core CPU), and it gives control over
the stored values: masking of
high bits beyond BitsStored, sign extension, PixelPaddingValue (and
PixelPaddingRangeLimit) mapped to air (-1024 HU), and per-slice slope/intercept.
Compressed syntaxes pydicom has no plugin for (JPEG lossless, JPEG-LS) are read
through SimpleITK's GDCM, which returns rescaled values; they are mapped back
to stored values so that the same padding logic applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from dsan_core.dicom import reasons
from dsan_core.dicom.codecs import GDCM_SYNTAXES, can_decode, pydicom_can_decode
from dsan_core.dicom.geometry import slice_normal
from dsan_core.errors import DicomError, GeometryError
from dsan_core.hounsfield import AIR_HU


@dataclass(frozen=True)
class Volume:
    """A CT volume in HU: `hu` is (z, y, x), float32 or int16."""

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, float, float, float, float, float, float, float, float]

    def to_sitk(self) -> sitk.Image:
        """The same volume as a SimpleITK image (copies the array)."""
        image = sitk.GetImageFromArray(self.hu)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def normalise_stored(values: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Stored values as int32, with bits above BitsStored cleared and the sign extended.

    Some scanners leave overlay or garbage bits above BitsStored, and some write
    signed 12-bit data without extending the sign into the 16-bit container.
    Idempotent: already clean values come back unchanged.
    """
    if values.dtype.kind in "iu" and bits_stored == values.dtype.itemsize * 8:
        if (values.dtype.kind == "i") == signed:
            return values.astype(np.int32)  # fast path: nothing above BitsStored to clear
    raw = values.astype(np.int64) & ((1 << bits_stored) - 1)
    if signed:
        raw = np.where(raw >= (1 << (bits_stored - 1)), raw - (1 << bits_stored), raw)
    return raw.astype(np.int32)


def _padding_range(ds: Dataset, bits_stored: int, signed: bool) -> tuple[int, int] | None:
    if "PixelPaddingValue" not in ds:
        return None
    ends = [int(ds.PixelPaddingValue)]
    if "PixelPaddingRangeLimit" in ds:
        ends.append(int(ds.PixelPaddingRangeLimit))
    clean = normalise_stored(np.array(ends), bits_stored, signed)
    return int(clean.min()), int(clean.max())


def _read_stored(path: Path, ds: Dataset, scan_id: str, *, slope: float,
                 intercept: float) -> np.ndarray:
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not can_decode(syntax or "1.2.840.10008.1.2"):
        raise DicomError(f"no installed decoder for transfer syntax {syntax}", scan=scan_id,
                         reason=reasons.UNSUPPORTED_TRANSFER_SYNTAX)
    if not syntax or pydicom_can_decode(syntax):
        try:
            return np.asarray(ds.pixel_array)
        except Exception as error:  # decoders raise arbitrary errors on malformed pixel data
            # e.g. Pillow lacks 12-bit JPEG Extended: GDCM may still manage it.
            if syntax not in GDCM_SYNTAXES:
                raise DicomError(f"pixel data cannot be decoded ({type(error).__name__})",
                                 scan=scan_id, reason=reasons.DECODE_FAILED) from None
    try:
        values = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0].astype(np.float64)
    except Exception as error:  # decoders raise arbitrary errors on malformed pixel data
        raise DicomError(f"pixel data cannot be decoded ({type(error).__name__})", scan=scan_id,
                         reason=reasons.DECODE_FAILED) from None
    # GDCM applied the modality LUT: undo it to recover the stored values.
    return np.rint((values - intercept) / slope)


def _slice_hu(path: Path, scan_id: str) -> tuple[np.ndarray, Dataset]:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as error:  # decoders raise arbitrary errors on malformed pixel data
        raise DicomError(f"a slice cannot be read ({type(error).__name__})", scan=scan_id,
                         reason=reasons.NOT_DICOM) from None
    try:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits_allocated = int(ds.get("BitsAllocated", 16))
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        padding = _padding_range(ds, bits_stored, signed)
    except (ValueError, TypeError):
        raise DicomError("an image tag holds an unparseable value", scan=scan_id,
                         reason=reasons.BAD_VALUE) from None
    if samples != 1 or frames != 1:
        raise DicomError("expected single-frame greyscale slices, found colour or multi-frame",
                         scan=scan_id, reason=reasons.UNSUPPORTED_IMAGE)
    stored = _read_stored(path, ds, scan_id, slope=slope, intercept=intercept)
    clean = normalise_stored(stored, bits_stored, signed)
    hu = clean.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if padding is not None:
        hu[(clean >= padding[0]) & (clean <= padding[1])] = AIR_HU
    return hu, ds


def _geometry(datasets: list[Dataset], scan_id: str) -> tuple[
        tuple[float, float, float], tuple[float, float, float],
        tuple[float, float, float, float, float, float, float, float, float]]:
    first = datasets[0]
    try:
        orientation = np.array([float(v) for v in first.ImageOrientationPatient])
        origin = np.array([float(v) for v in first.ImagePositionPatient])
        row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    except (AttributeError, ValueError, TypeError):
        raise GeometryError("expected ImageOrientationPatient, ImagePositionPatient and "
                            "PixelSpacing, found one missing", scan=scan_id,
                            reason=reasons.MISSING_GEOMETRY) from None
    normal = slice_normal(orientation)
    if len(datasets) > 1:
        try:
            along = np.array([np.array([float(v) for v in ds.ImagePositionPatient]) @ normal
                              for ds in datasets])
        except (AttributeError, ValueError, TypeError):
            raise GeometryError("expected ImagePositionPatient on every slice", scan=scan_id,
                                reason=reasons.MISSING_GEOMETRY) from None
        steps = np.diff(along)
        if not ((steps > 0).all() or (steps < 0).all()):
            raise GeometryError("expected slices in monotonic order along the normal",
                                scan=scan_id, reason=reasons.UNSORTED_SLICES)
        if steps[0] < 0:
            normal = -normal
        z_spacing = float(np.abs(steps).mean())
    else:
        z_spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    axes = np.stack([orientation[:3], orientation[3:], normal], axis=1)
    direction = tuple(float(v) for v in axes.reshape(-1))
    spacing = (col_spacing, row_spacing, z_spacing)
    return spacing, tuple(float(v) for v in origin), direction  # type: ignore[return-value]


def decode_series(
    paths_in_slice_order: Sequence[Path],
    *,
    scan_id: str,
    dtype: Literal["float32", "int16"] = "float32",
) -> Volume:
    """Decode files (already in slice order, e.g. `SeriesPlan.slice_paths`) to a HU volume.

    `scan_id` is the pseudonymous name used in error messages. int16 output rounds
    HU to integers and refuses values outside the int16 range.
    """
    if not paths_in_slice_order:
        raise DicomError("expected at least one slice, found none", scan=scan_id,
                         reason=reasons.TOO_FEW_SLICES)
    slices: list[np.ndarray] = []
    datasets: list[Dataset] = []
    for path in paths_in_slice_order:
        hu, ds = _slice_hu(Path(path), scan_id)
        if slices and hu.shape != slices[0].shape:
            raise GeometryError(f"expected every slice {slices[0].shape}, found {hu.shape}",
                                scan=scan_id, reason=reasons.MIXED_MATRIX)
        slices.append(hu)
        ds.PixelData = b""  # free the pixel bytes; the header is kept for geometry
        datasets.append(ds)
    spacing, origin, direction = _geometry(datasets, scan_id)
    volume = np.stack(slices)
    if dtype == "int16":
        rounded = np.rint(volume)
        if rounded.min() < -32768 or rounded.max() > 32767:
            raise DicomError("HU values do not fit int16", scan=scan_id,
                             reason=reasons.DECODE_FAILED)
        volume = rounded.astype(np.int16)
    return Volume(hu=volume, spacing=spacing, origin=origin, direction=direction)
