"""Intensity window and lung masking. Arrays are (z, y, x); CT values in HU."""

from __future__ import annotations

import numpy as np
import torch

from dsan_core.hounsfield import AIR_HU

__all__ = ["AIR_HU", "mask_outside_lung_", "shift_lung_median_", "window_bounds",
           "window_normalise", "window_normalise_"]


def window_bounds(width: float, level: float) -> tuple[float, float]:
    """The HU interval [level - width/2, level + width/2] of a window."""
    return level - width / 2.0, level + width / 2.0


def window_normalise(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Clip HU to the window and scale it to [0, 1] (float32).

    Width 1500 / level -600: -1350 -> 0, -600 -> 0.5, 150 -> 1.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low, high = window_bounds(width, level)
    out = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    out -= np.float32(low)
    out *= np.float32(1.0 / width)
    return out


def window_normalise_(hu: torch.Tensor, width: float, level: float) -> torch.Tensor:
    """In-place torch version of `window_normalise` for a float tensor."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low, high = window_bounds(width, level)
    return hu.clamp_(low, high).sub_(low).mul_(1.0 / width)


def mask_outside_lung_(image: torch.Tensor, lung: np.ndarray) -> torch.Tensor:
    """Set voxels outside the lung mask to 0, in place (the network input)."""
    return image.mul_(torch.from_numpy(lung != 0))


def shift_lung_median_(hu: torch.Tensor, lung: np.ndarray, reference_hu: float) -> float:
    """Shift a CT (HU, float tensor) in place so that the median inside the lung mask is
    `reference_hu`; return the shift (HU). A scanner's calibration offset (tens of HU
    between sites) then no longer moves the whole input; contrasts inside the scan are
    kept. An empty lung mask leaves the CT as it is (shift 0; the input is all masked)."""
    inside = hu.numpy()[lung != 0]
    if inside.size == 0:
        return 0.0
    # numpy's median: torch.quantile refuses more than 2**24 values (a large lung).
    shift = float(reference_hu) - float(np.median(inside.astype(np.float64)))
    hu.add_(shift)
    return shift
