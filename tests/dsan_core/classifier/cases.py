"""Tiny classifier cases on disk, read through memory maps like the pipeline's."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from dsan_core.classifier import ClassifierCase

#: (sampling group, label) of the training and validation scans.
TRAIN_GROUPS = [("covid_small", 1), ("cap_small", 0), ("covid_large", 1), ("cap_large", 0),
                ("covid_small", 1), ("cap_small", 0)]
VAL_GROUPS = [("covid_large", 1), ("cap_small", 0), ("covid_small", 1), ("cap_large", 0)]


def write_case(folder: Path, scan_id: str, group: str, label: int, seed: int,
               shape: tuple[int, int, int] = (16, 16, 16),
               dtype: str = "float16") -> ClassifierCase:
    """A lung-masked image in [0, 1]: COVID scans carry a bright infection cube."""
    rng = np.random.default_rng(seed)
    image = (0.2 + 0.1 * rng.random(shape)).astype(np.float32)
    image[:, :, : shape[2] // 8] = 0  # outside the lung
    infection = np.zeros(shape, np.uint8)
    if label == 1:
        z, y, x = (int(rng.integers(2, n - 6)) for n in shape)
        size = 5 if group == "covid_large" else 3
        infection[z:z + size, y:y + size, x:x + size] = 1
        image[infection == 1] = 0.8
    image_path, mask_path = folder / f"{scan_id}_image.npy", folder / f"{scan_id}_infection.npy"
    np.save(image_path, image.astype(dtype))
    np.save(mask_path, infection)
    return ClassifierCase(
        scan_id=scan_id,
        label=label,
        sampling_group=group,
        image=functools.partial(np.load, image_path, mmap_mode="r"),
        infection=functools.partial(np.load, mask_path, mmap_mode="r"),
    )


def make_cases(folder: Path, groups: list[tuple[str, int]], prefix: str, *, seed: int,
               shape: tuple[int, int, int] = (16, 16, 16)) -> list[ClassifierCase]:
    return [write_case(folder, f"{prefix}{i}", group, label, seed + i, shape)
            for i, (group, label) in enumerate(groups)]
