"""Arrays and SimpleITK images meet in storage.volumes only: (z, y, x) arrays, the grid
from the reference image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from storage.volumes import array_image, image_array, read_array, read_image, write_array


def test_an_array_round_trips_on_its_reference_grid(tmp_path: Path) -> None:
    reference = sitk.Image(5, 4, 3, sitk.sitkInt16)  # x, y, z
    reference.SetSpacing((0.7, 0.8, 1.25))
    reference.SetOrigin((1.0, 2.0, 3.0))
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, 2, 3] = True
    image = array_image(mask, reference, np.uint8)
    assert image.GetSize() == (5, 4, 3) and image.GetSpacing() == (0.7, 0.8, 1.25)
    write_array(mask, reference, tmp_path / "m.nii.gz", np.uint8)
    back = read_array(tmp_path / "m.nii.gz")
    assert back.dtype == np.uint8 and back.shape == (3, 4, 5) and back[1, 2, 3] == 1
    assert read_image(tmp_path / "m.nii.gz").GetOrigin() == (1.0, 2.0, 3.0)
    assert image_array(reference, np.float32).dtype == np.float32
