"""Sliding-window VB-Net inference and mask post-processing.

Arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order); images are HU.
The network works at `VBNetConfig.spacing_mm`: `prepare_image` resamples there
(linear) and scales intensities; `segment_volume` resamples the class probabilities
back to the original grid (linear) before thresholding them (`masks_from_probs`), so
masks come out in the scan's own geometry.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from dsan_core.config import VBNetConfig
from dsan_core.errors import InputError
from dsan_core.segmentation.components import keep_largest_two
from dsan_core.segmentation.vbnet import N_CLASSES

#: HU clipped to this range, then scaled to [0, 1] (0 = air, also the padding value).
HU_WINDOW: tuple[float, float] = (-1200.0, 400.0)

Shape3 = tuple[int, int, int]


def scale_hu(hu: np.ndarray) -> np.ndarray:
    """HU -> float32 in [0, 1] over `HU_WINDOW`."""
    low, high = HU_WINDOW
    return ((np.clip(hu, low, high) - low) / (high - low)).astype(np.float32)


def network_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> Shape3:
    """The (z, y, x) size of a volume of `shape` resampled from `spacing` to `target_spacing`."""
    zyx_old = tuple(reversed(tuple(spacing)))
    zyx_new = tuple(reversed(tuple(target_spacing)))
    sizes = [max(1, round(n * a / b)) for n, a, b in zip(shape, zyx_old, zyx_new, strict=True)]
    return sizes[0], sizes[1], sizes[2]


def resize_linear(volume: np.ndarray | torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Trilinear resize of a (z, y, x) or (c, z, y, x) array; voxel centres scale with size."""
    tensor = torch.as_tensor(volume, dtype=torch.float32)
    squeeze = tensor.ndim == 3
    batch = tensor[None, None] if squeeze else tensor[None]
    if tuple(batch.shape[2:]) == tuple(shape):
        out = batch
    else:
        out = F.interpolate(batch, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0, 0] if squeeze else out[0]


def resize_nearest(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer (z, y, x) mask; keeps the dtype."""
    if tuple(mask.shape) == tuple(shape):
        return mask.copy()
    tensor = torch.as_tensor(mask.astype(np.float32))[None, None]
    out = F.interpolate(tensor, size=tuple(shape), mode="nearest-exact")
    return out[0, 0].numpy().astype(mask.dtype)


def prepare_image(hu: np.ndarray, spacing: Sequence[float], config: VBNetConfig) -> np.ndarray:
    """HU (z, y, x) at `spacing` -> float32 network input at `config.spacing_mm`, in [0, 1]."""
    shape = network_shape(hu.shape, spacing, config.spacing_mm)
    return resize_linear(scale_hu(hu), shape).numpy()


def pad_to(volume: np.ndarray, shape: Sequence[int], value: float = 0.0) -> np.ndarray:
    """Pad (at the end of each axis) up to at least `shape`."""
    pads = [(0, max(0, int(t) - n)) for n, t in zip(volume.shape[-3:], shape, strict=True)]
    pads = [(0, 0)] * (volume.ndim - 3) + pads
    return np.pad(volume, pads, constant_values=value)


def _gaussian_weights(patch: Shape3) -> torch.Tensor:
    # Centre voxels of a window are more reliable than its borders (nnU-Net's choice).
    axes = []
    for n in patch:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (coords / (n / 8)) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = weights / weights.max()
    return weights.clamp_min(1e-3)


def _starts(size: int, patch: int, overlap: float) -> list[int]:
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


@torch.no_grad()
def sliding_window_probs(
    model: torch.nn.Module,
    image: np.ndarray,
    config: VBNetConfig,
    device: torch.device,
) -> torch.Tensor:
    """Softmax probabilities (3, z, y, x) float32 on CPU for a network-grid image (z, y, x).

    Windows of `config.patch_size` overlap by `config.overlap` and are blended with
    Gaussian weights; the image is zero-padded (air) when smaller than a patch.
    Blending happens on `device` (one copy back at the end, not one per window).
    """
    patch = config.patch_size
    padded = pad_to(image, patch)
    volume = torch.as_tensor(padded, dtype=torch.float32).to(device)
    weights = _gaussian_weights(patch).to(device)
    acc = torch.zeros((N_CLASSES, *padded.shape), dtype=torch.float32, device=device)
    norm = torch.zeros(padded.shape, dtype=torch.float32, device=device)
    use_amp = device.type == "cuda" and config.mixed_precision
    was_training = model.training
    model.eval()
    try:
        corners = itertools.product(
            *(_starts(n, p, config.overlap) for n, p in zip(padded.shape, patch, strict=True))
        )
        for corner in corners:
            window = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
            batch = volume[window][None, None]
            with torch.autocast(device_type=device.type, enabled=use_amp):
                logits = model(batch)
            probs = torch.softmax(logits.float(), dim=1)[0]
            acc[(slice(None), *window)] += probs * weights
            norm[window] += weights
    finally:
        model.train(was_training)
    z, y, x = image.shape
    return (acc / norm)[:, :z, :y, :x].cpu()


def masks_from_probs(
    probs: torch.Tensor, infection_threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw boolean (lung, infection) masks from (3, z, y, x) class probabilities.

    Lung (infection included) where background is not the majority (p_lung +
    p_infection > p_background, the region the Dice loss trains); infection where
    its probability exceeds `infection_threshold`, inside that lung.
    """
    lung = probs[0] < 0.5
    return lung, lung & (probs[2] > infection_threshold)


def _fill_holes_3d(mask: np.ndarray) -> np.ndarray:
    # In 3-D, not per axial slice: an axial slice through the diaphragm dome shows the
    # lung as a ring around the liver, and a slice-wise fill would add the liver.
    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


def postprocess_masks(
    lung: np.ndarray, infection: np.ndarray, *, min_second_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Clean raw (z, y, x) masks; returns uint8 (lung, infection).

    The lung (which includes the infection) keeps its largest connected component
    and the second largest when that is at least `min_second_fraction` of the first
    (the two lungs; one when they touch or one is tiny), gets its enclosed (3-D)
    holes filled, and the infection is then restricted to it.
    """
    if lung.shape != infection.shape:
        raise InputError(f"lung {lung.shape} and infection {infection.shape} shapes differ")
    lung_b = lung.astype(bool) | infection.astype(bool)
    lung_b = _fill_holes_3d(keep_largest_two(lung_b, min_second_fraction=min_second_fraction))
    infection_b = infection.astype(bool) & lung_b
    return lung_b.astype(np.uint8), infection_b.astype(np.uint8)


def volume_probs(
    model: torch.nn.Module,
    volume_hu: np.ndarray,
    spacing: Sequence[float],
    config: VBNetConfig,
    device: torch.device,
) -> torch.Tensor:
    """Class probabilities (3, z, y, x) on the grid of `volume_hu`, as a tensor on `device`.

    The network runs at `config.spacing_mm`; its probabilities are resampled back
    (linear) where the model ran (paper size: ~1 GB of upsampling).
    """
    if volume_hu.ndim != 3:
        raise InputError(f"expected a 3-D (z, y, x) volume, found shape {volume_hu.shape}")
    image = prepare_image(volume_hu, spacing, config)
    probs = sliding_window_probs(model, image, config, device)
    return resize_linear(probs.to(device), volume_hu.shape)


def masks_at(probs: torch.Tensor, infection_threshold: float = 0.5, *,
             postprocess: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (lung, infection) masks from `volume_probs`: `masks_from_probs`, then
    (by default) `postprocess_masks`."""
    lung_t, infection_t = masks_from_probs(probs, infection_threshold)
    lung, infection = lung_t.cpu().numpy(), infection_t.cpu().numpy()
    if postprocess:
        return postprocess_masks(lung, infection)
    return lung.astype(np.uint8), infection.astype(np.uint8)


def segment_volume(
    model: torch.nn.Module,
    volume_hu: np.ndarray,
    spacing: Sequence[float],
    config: VBNetConfig,
    device: torch.device,
    *,
    infection_threshold: float = 0.5,
    postprocess: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Lung and infection uint8 masks (z, y, x) on the grid of `volume_hu` (HU, `spacing`).

    `infection_threshold`: 0.5 is the majority rule; `infection_threshold_of` gives the
    configured or calibrated one for a checkpoint (see `masks_from_probs`).
    """
    probs = volume_probs(model, volume_hu, spacing, config, device)
    return masks_at(probs, infection_threshold, postprocess=postprocess)
