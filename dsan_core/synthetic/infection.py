"""Paint planned lesions into a slab of a synthetic chest.

Conventions: arrays are (z, y, x), coordinates in mm, values in HU.

Sizing is exact rather than iterative: every lesion i has a centre, radii and an
in-plane orientation, and a voxel's scaled distance is D = min_i |(p - c_i) / r_i|
(with a gentle irregularity). Growing all lesions by one factor s marks {D <= s}, so
the s that hits the target is the matching order statistic of D over the lung voxels
(`LesionCut`, found in a first pass over the slabs). A lesion stays in its own lung
(`Lesion.side`): voxels of the other lung are `OTHER_LUNG` further away, so they are
reached only if one lung cannot hold the target. Within a lesion the depth
q = D / s (0 centre, 1 border) sets the look: core HU inside `core_fraction`, a ramp
to the halo HU outside it, opacity falling towards the border, septal lines for
crazy paving. Vessels brighter than the lesion stay visible through it, as in GGO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsan_core.synthetic.anatomy import Anatomy, LungSlab
from dsan_core.synthetic.lesions import Lesion

FloatArray = NDArray[np.float32]
#: Opacity at a lesion's border (it rises to 1 towards the core at a rate 1 / softness).
BORDER_OPACITY = 0.7
#: Spacing (mm) of the polygonal septal lines of crazy paving (secondary lobules).
PAVING_PERIOD_MM = 11.0
#: Noise (HU) of lesion texture.
TEXTURE_HU = 25.0
#: Added to a lesion's scaled distance in the other lung.
OTHER_LUNG = 1000.0


@dataclass(frozen=True)
class LesionCut:
    """Where the lesions stop: D < threshold, plus the first `ties` lung voxels at D == it."""

    threshold: float
    ties: int


def lung_points(anatomy: Anatomy | LungSlab
                ) -> tuple[NDArray[np.intp], tuple[FloatArray, ...], NDArray[np.int8]]:
    """Flat indices of the slab's lung voxels (C order), their (z, y, x) mm and lung codes."""
    idx = np.flatnonzero(anatomy.lung)
    zi, yi, xi = np.unravel_index(idx, anatomy.lung.shape)
    return (idx, (anatomy.z_mm[zi], anatomy.y_mm[yi], anatomy.x_mm[xi]),
            anatomy.side.reshape(-1)[idx])


def scaled_distance(lesions: tuple[Lesion, ...], points: tuple[FloatArray, ...],
                    sides: NDArray[np.int8]) -> tuple[FloatArray, NDArray[np.intp]]:
    """Per point: min over lesions of the irregular normalised distance, and its owner."""
    pz, py, px = points
    best = np.full(pz.shape, np.inf, dtype=np.float32)
    owner = np.zeros(pz.shape, dtype=np.intp)
    for i, lesion in enumerate(lesions):
        cz, cy, cx = lesion.centre
        rz, rr, rt = (max(r, 1e-3) for r in lesion.radii)
        dz, dy, dx = pz - cz, py - cy, px - cx
        cos, sin = np.cos(lesion.angle), np.sin(lesion.angle)
        radial = dx * cos + dy * sin
        tangential = dy * cos - dx * sin
        d = np.sqrt((dz / rz) ** 2 + (radial / rr) ** 2 + (tangential / rt) ** 2)
        # A few low-frequency ripples make the outline lumpy instead of ellipsoidal.
        ripple = np.zeros_like(d)
        for (kz, ky, kx), phase in zip(lesion.waves, lesion.phases, strict=True):
            ripple += np.sin(kz * dz + ky * dy + kx * dx + phase)
        d = (d * (1.0 + 0.06 * ripple)).astype(np.float32)
        if lesion.side:
            d[sides != lesion.side] += np.float32(OTHER_LUNG)
        closer = d < best
        best[closer] = d[closer]
        owner[closer] = i
    return best, owner


def find_cut(distances: FloatArray, count: int) -> LesionCut | None:
    """The cut that marks exactly `count` of the lung voxels whose distances these are."""
    if count <= 0 or distances.size == 0:
        return None
    count = min(count, distances.size)
    threshold = float(np.partition(distances, count - 1)[count - 1])
    below = int(np.count_nonzero(distances < np.float32(threshold)))
    return LesionCut(threshold=threshold, ties=count - below)


def _septal_lines(points: tuple[FloatArray, ...]) -> FloatArray:
    """1 on a warped 3-D lattice of thin walls (interlobular septa), 0 elsewhere."""
    pz, py, px = points
    period = PAVING_PERIOD_MM
    walls = np.zeros(pz.shape, dtype=bool)
    for a, b in ((px, py), (py, pz), (pz, px)):
        warped = a + 2.5 * np.sin(2 * np.pi * b / (2.1 * period))
        walls |= np.cos(2 * np.pi * warped / period) > 0.8
    return walls.astype(np.float32)


def paint_lesions(anatomy: Anatomy, hu: FloatArray, lesions: tuple[Lesion, ...],
                  cut: LesionCut | None, ties_seen: int, texture: FloatArray
                  ) -> tuple[NDArray[np.bool_], int]:
    """Paint `lesions` into the slab `hu` (in place) up to `cut`.

    `ties_seen` counts lung voxels at D == threshold in earlier slabs; `texture` is a
    unit-normal field of the slab's shape. Returns the slab's infection mask (exactly
    the lung voxels that received lesion intensity) and the updated tie count.
    """
    infection = np.zeros(anatomy.lung.shape, dtype=bool)
    if cut is None or not lesions:
        return infection, ties_seen
    idx, points, sides = lung_points(anatomy)
    dist, owner = scaled_distance(lesions, points, sides)
    threshold = np.float32(cut.threshold)
    on_edge = np.flatnonzero(dist == threshold)
    keep = on_edge[: max(cut.ties - ties_seen, 0)]
    inside = dist < threshold
    inside[keep] = True
    ties_seen += on_edge.size

    sel = np.flatnonzero(inside)
    flat_idx, own = idx[sel], owner[sel]
    depth = dist[sel] / max(cut.threshold, 1e-6)
    sub = tuple(p[sel] for p in points)
    core = np.array([lesion.core_hu for lesion in lesions], dtype=np.float32)[own]
    halo = np.array([lesion.halo_hu for lesion in lesions], dtype=np.float32)[own]
    fraction = np.array([lesion.core_fraction for lesion in lesions], dtype=np.float32)[own]
    softness = np.array([lesion.softness for lesion in lesions], dtype=np.float32)[own]
    paving = np.array([lesion.paving_hu for lesion in lesions], dtype=np.float32)[own]
    ramp = np.clip((depth - fraction) / np.maximum(1.0 - fraction, 1e-3), 0.0, 1.0)
    target = core + ramp * (halo - core)
    if paving.any():
        target += paving * _septal_lines(sub)  # type: ignore[arg-type]
    target += TEXTURE_HU * texture.reshape(-1)[flat_idx]
    alpha = np.clip(BORDER_OPACITY + (1.0 - depth) / softness, 0.0, 1.0)
    flat = hu.reshape(-1)
    base = flat[flat_idx]
    flat[flat_idx] = base + alpha * np.maximum(target - base, 0.0)
    infection.reshape(-1)[flat_idx] = True
    return infection, ties_seen
