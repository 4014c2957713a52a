"""Ground-truth masks as NIfTI files that overlay the thin DICOM series exactly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray


@dataclass(frozen=True)
class MaskGeometry:
    """Origin and spacing (x, y, z) mm of a thin series as SimpleITK reads it.

    The direction is always the identity (axial, LPS).
    """

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]

    @property
    def voxel_ml(self) -> float:
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0


def write_mask(path: Path, mask: NDArray[np.uint8], geometry: MaskGeometry) -> None:
    """Write a (z, y, x) 0/1 mask as uint8 NIfTI, atomically (temp name + os.replace)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name.removesuffix('.nii.gz')}.tmp.nii.gz")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, path)
