"""VB-Net training data: labelled cases read lazily, resampled to the network's grid,
kept in a small cache, and cut into class-aware patches.

Arrays are (z, y, x); spacings (x, y, z) mm; images HU before `prepare_case`.
Labels are 0 background, 1 lung, 2 infection (infection is always lung too).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dsan_core.config import VBNetConfig
from dsan_core.errors import InputError
from dsan_core.segmentation.inference import network_shape, pad_to, prepare_image, resize_nearest


@dataclass(frozen=True)
class SegVolume:
    """One labelled scan: hu float32, lung and infection uint8, all (z, y, x); spacing (x, y, z)."""

    hu: np.ndarray
    lung: np.ndarray
    infection: np.ndarray
    spacing: tuple[float, float, float]


@dataclass(frozen=True)
class SegCase:
    """A scan by pseudonymous id; `load` reads it only when needed (paper-size volumes)."""

    case_id: str
    load: Callable[[], SegVolume]


@dataclass(frozen=True)
class PreparedCase:
    """A case on the network grid: image float32 in [0, 1], labels uint8 0/1/2, (z, y, x)."""

    case_id: str
    image: np.ndarray
    labels: np.ndarray


def prepare_case(volume: SegVolume, config: VBNetConfig, *, case_id: str = "") -> PreparedCase:
    """Resample a labelled scan to `config.spacing_mm` (image linear, labels nearest)."""
    shapes = {volume.hu.shape, volume.lung.shape, volume.infection.shape}
    if len(shapes) != 1 or volume.hu.ndim != 3:
        raise InputError(
            f"expected hu, lung and infection of one 3-D shape, found {sorted(shapes)}",
            scan=case_id or None,
        )
    lung = volume.lung.astype(bool) | volume.infection.astype(bool)
    labels = lung.astype(np.uint8) + (volume.infection.astype(bool) & lung).astype(np.uint8)
    shape = network_shape(volume.hu.shape, volume.spacing, config.spacing_mm)
    image = prepare_image(volume.hu, volume.spacing, config)
    return PreparedCase(case_id, image, resize_nearest(labels, shape))


def sample_patch(
    case: PreparedCase,
    patch: Sequence[int],
    infection_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, labels) patch of size `patch`, zero-padded when the case is smaller.

    With probability `infection_fraction` the patch is centred on a random infection
    voxel (a lung voxel when there is none); otherwise on a random lung voxel or a
    uniformly random position, half and half.
    """
    image = pad_to(case.image, patch)
    labels = pad_to(case.labels, patch)
    draw = rng.random()
    candidates: np.ndarray | None = None
    if draw < infection_fraction:
        candidates = np.flatnonzero(labels == 2)
        if candidates.size == 0:
            candidates = np.flatnonzero(labels >= 1)
    elif draw < infection_fraction + (1 - infection_fraction) / 2:
        candidates = np.flatnonzero(labels >= 1)
    centre: tuple[int, ...]
    if candidates is not None and candidates.size:
        flat = int(candidates[rng.integers(candidates.size)])
        centre = tuple(int(c) for c in np.unravel_index(flat, labels.shape))
    else:
        centre = tuple(int(rng.integers(n)) for n in labels.shape)
    starts = [
        int(min(max(c - p // 2, 0), n - p))
        for c, p, n in zip(centre, patch, labels.shape, strict=True)
    ]
    window = tuple(slice(s, s + p) for s, p in zip(starts, patch, strict=True))
    return image[window], labels[window]


class CaseCache:
    """Prepared cases by index, least recently used evicted beyond `capacity`."""

    def __init__(self, cases: Sequence[SegCase], config: VBNetConfig, capacity: int) -> None:
        self.cases, self.config, self.capacity = cases, config, capacity
        self._items: OrderedDict[int, PreparedCase] = OrderedDict()

    def get(self, index: int) -> PreparedCase:
        if index in self._items:
            self._items.move_to_end(index)
            return self._items[index]
        case = self.cases[index]
        prepared = prepare_case(case.load(), self.config, case_id=case.case_id)
        self._items[index] = prepared
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return prepared


def sample_batch(cache: CaseCache, config: VBNetConfig, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`config.batch_size` patches of random cases: images float32 (B, 1, z, y, x) and
    labels uint8 (B, z, y, x)."""
    pairs = [
        sample_patch(cache.get(int(rng.integers(len(cache.cases)))), config.patch_size,
                     config.infection_patch_fraction, rng)
        for _ in range(config.batch_size)
    ]
    return np.stack([p[0] for p in pairs])[:, None], np.stack([p[1] for p in pairs])
