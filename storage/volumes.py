"""NIfTI volumes and masks, memory-mappable arrays, and figures: atomic writes only.

SimpleITK images and numpy arrays meet here only (`image_array`, `read_array`,
`array_image`, `write_array`): arrays are (z, y, x), images carry the grid (origin,
spacing, direction)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import DTypeLike

from dsan_core.errors import MaskError
from dsan_core.grid import ScanGeometry
from dsan_core.segmentation.slicer import read_seg_nrrd, seg_nrrd_bytes
from storage.atomic import atomic_path, write_bytes, write_text


def write_image(image: sitk.Image, destination: Path) -> None:
    """Write a SimpleITK image (NIfTI when the name ends in .nii.gz) atomically."""
    with atomic_path(destination) as temp:
        sitk.WriteImage(image, str(temp), useCompression=True)


def read_image(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def image_array(image: sitk.Image, dtype: DTypeLike | None = None) -> np.ndarray:
    """An image's voxels as a (z, y, x) array of its own (`dtype`: converted)."""
    array = sitk.GetArrayFromImage(image)
    return array if dtype is None else array.astype(dtype, copy=False)


def read_array(path: Path, dtype: DTypeLike | None = None) -> np.ndarray:
    """The voxels of an image file (NIfTI, ...) as a (z, y, x) array."""
    return image_array(read_image(path), dtype)


def array_image(array: np.ndarray, reference: sitk.Image,
                dtype: DTypeLike | None = None) -> sitk.Image:
    """A (z, y, x) array as an image on `reference`'s grid (`dtype`: converted first)."""
    image = sitk.GetImageFromArray(array if dtype is None else np.asarray(array, dtype=dtype))
    image.CopyInformation(reference)
    return image


def write_array(array: np.ndarray, reference: sitk.Image, destination: Path,
                dtype: DTypeLike | None = None) -> None:
    """Write a (z, y, x) array on `reference`'s grid as an image file, atomically."""
    write_image(array_image(array, reference, dtype), destination)


def write_segmentation(labels: np.ndarray, reference: sitk.Image, destination: Path) -> None:
    """A 0/1/2 label map (z, y, x) on `reference`'s grid as a 3D Slicer segmentation
    (`.seg.nrrd`, segments lung and infection), atomically."""
    write_bytes(destination, seg_nrrd_bytes(labels, ScanGeometry.from_image(reference)))


def read_segmentation(path: Path, *, scan_id: str) -> tuple[np.ndarray, ScanGeometry]:
    """The 0/1/2 label map (z, y, x) and grid of a `.seg.nrrd` (see
    `dsan_core.segmentation.slicer.read_seg_nrrd`)."""
    return read_seg_nrrd(path.read_bytes(), scan_id=scan_id)


def write_npy(destination: Path, array: np.ndarray) -> None:
    """Write an array as .npy (memory-mappable with np.load(mmap_mode='r'))."""
    with atomic_path(destination) as temp:
        np.save(temp, np.ascontiguousarray(array), allow_pickle=False)


def open_npy(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def figure_png(figure: Any, *, dpi: int = 110) -> bytes:
    """A matplotlib Figure as PNG bytes (no pyplot global state). The figures are laid out
    by matplotlib's constrained layout, which keeps every artist on the canvas: no
    `bbox_inches="tight"`, which would draw each figure twice."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def write_figure(figure: Any, destination: Path, *, dpi: int = 110) -> None:
    """Save a matplotlib Figure as PNG atomically."""
    write_bytes(destination, figure_png(figure, dpi=dpi))


def write_geometry(destination: Path, geometry: dict[str, Any]) -> None:
    write_text(destination, json.dumps(geometry, indent=2, sort_keys=True) + "\n")


def read_geometry(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(path.read_text())
    return payload


def external_mask_files(folder: Path, scan_id: str) -> dict[str, Path]:
    """A scan's masks in an external mask folder: `<scan_id>_lung.nii.gz` +
    `<scan_id>_infection.nii.gz` ("lung", "infection"), else a label map
    `<scan_id>.nii.gz` ("labels"); MaskError naming the scan when neither is there."""
    pair = {kind: folder / f"{scan_id}_{kind}.nii.gz" for kind in ("lung", "infection")}
    if all(path.is_file() for path in pair.values()):
        return pair
    label_map = folder / f"{scan_id}.nii.gz"
    if label_map.is_file():
        return {"labels": label_map}
    raise MaskError(
        f"no external masks (expected {scan_id}_lung.nii.gz and {scan_id}_infection.nii.gz, "
        f"or a label map {scan_id}.nii.gz, in external_mask_dir)", scan=scan_id,
        reason="missing")
