"""What a site's scanner does to the pixels: noise, reconstruction kernel, HU offset.

Conventions: slabs are (z, y, x) float32 HU; the kernel acts in-plane only (one slice
at a time), so a slab never depends on the slices of another slab.

A kernel of `sharpness` s turns a slice x into x + s (x - G x), G a Gaussian of
`KERNEL_MM` (at least `MIN_SIGMA_PX` pixels): s = -1 is the smooth G x, s = 0 leaves
the slice alone, s > 0 sharpens (unsharp masking: edges overshoot, fine texture and
noise grow). Noise is white before the kernel and scaled so that its standard
deviation AFTER the kernel is `noise_hu`, so a site's noise and its sharpness are two
separate settings. The offset (a calibration drift of a few HU) is added last, to
every voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

FloatArray = NDArray[np.float32]
#: Width (sigma, mm) of the Gaussian the kernels smooth with or sharpen against.
KERNEL_MM = 2.0
MIN_SIGMA_PX = 0.8


@dataclass(frozen=True)
class Scanner:
    """A site's pixel effects: noise SD after the kernel (HU), kernel sharpness, offset (HU)."""

    noise_hu: float = 15.0
    sharpness: float = 0.0
    offset_hu: float = 0.0


def kernel_sigma_px(pixel_mm: float) -> float:
    return max(KERNEL_MM / pixel_mm, MIN_SIGMA_PX)


@cache
def noise_gain(sharpness: float, sigma_px: float) -> float:
    """How much the kernel scales white noise's standard deviation (its impulse response's norm)."""
    half = int(np.ceil(4 * sigma_px)) + 1
    impulse = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float64)
    impulse[half, half] = 1.0
    response = apply_kernel(impulse, sharpness, sigma_px)
    return float(np.sqrt((response**2).sum()))


def apply_kernel(hu: NDArray[np.floating], sharpness: float, sigma_px: float
                 ) -> NDArray[np.floating]:
    """x + s (x - G x) over the last two axes (in-plane), each slice on its own."""
    if sharpness == 0.0:
        return hu
    sigma = (0.0,) * (hu.ndim - 2) + (sigma_px, sigma_px)
    smooth = ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest")
    return hu + sharpness * (hu - smooth)


def acquire(hu: FloatArray, noise: FloatArray, scanner: Scanner, pixel_mm: float) -> FloatArray:
    """The slab as the site's scanner reconstructs it, from noise-free HU and unit noise."""
    sigma = kernel_sigma_px(pixel_mm)
    out = hu
    if scanner.noise_hu > 0:
        out = out + (scanner.noise_hu / noise_gain(scanner.sharpness, sigma)) * noise
    out = apply_kernel(out, scanner.sharpness, sigma).astype(np.float32)
    if scanner.offset_hu:
        out = out + np.float32(scanner.offset_hu)
    return out
