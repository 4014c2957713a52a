"""Pneumonia lesions painted into a synthetic chest, sized to a target infection ratio.

Conventions: arrays are (z, y, x), coordinates in mm, values in HU.

COVID-like: bilateral, peripheral (subpleural), multifocal ground-glass opacities
(GGO, -700 to -300 HU, soft edges), posterior and lower zones preferred.
CAP-like: mostly unilateral lobar or segmental consolidation (-100 to +50 HU, sharp
edges), or one to three small patches. A minority of each class borrows the other's
look, so the classes overlap.

Sizing is exact rather than iterative: every lesion i has a centre c_i and radii r_i,
and a voxel's scaled distance is D = min_i |(p - c_i) / r_i| (with a gentle
irregularity). Growing all lesions by one factor s marks {D <= s}, so the s that hits
the target is simply the matching order statistic of D over the lung voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from dsan_core.synthetic.anatomy import Anatomy

LesionKind = Literal["ggo", "consolidation"]
Pattern = Literal["auto", "ggo", "consolidation"]

#: HU range a lesion core is drawn from, per kind.
GGO_HU: tuple[float, float] = (-700.0, -300.0)
CONSOLIDATION_HU: tuple[float, float] = (-100.0, 50.0)
#: Opacity at a lesion's border (it rises to 1 towards the core); edge softness per kind.
_BORDER_OPACITY = 0.35
_SOFTNESS = {"ggo": 0.9, "consolidation": 0.25}


@dataclass(frozen=True)
class Lesion:
    """One lesion: centre (z, y, x) mm, base radii (z, y, x) mm, kind and core HU."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    kind: LesionKind
    core_hu: float


def _pick_centres(
    anatomy: Anatomy,
    rng: np.random.Generator,
    candidates: NDArray[np.bool_],
    count: int,
    weights: NDArray[np.float64] | None = None,
) -> list[tuple[float, float, float]]:
    flat = np.flatnonzero(candidates)
    if flat.size == 0:
        flat = np.flatnonzero(anatomy.lung)
        weights = None
    p = None
    if weights is not None:
        w = weights.ravel()[flat]
        p = w / w.sum()
    chosen = rng.choice(flat, size=count, replace=True, p=p)
    zi, yi, xi = np.unravel_index(chosen, anatomy.lung.shape)
    return [
        (float(anatomy.z_mm[a]), float(anatomy.y_mm[b]), float(anatomy.x_mm[c]))
        for a, b, c in zip(zi, yi, xi, strict=True)
    ]


def _core_hu(kind: LesionKind, rng: np.random.Generator) -> float:
    lo, hi = GGO_HU if kind == "ggo" else CONSOLIDATION_HU
    # Keep the core inside the range even after blending and texture.
    return float(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))


def plan_lesions(
    anatomy: Anatomy,
    rng: np.random.Generator,
    diagnosis: Literal["COVID", "CAP"] | None,
    *,
    pattern: Pattern = "auto",
) -> list[Lesion]:
    """Choose lesion centres, shapes and kinds for one scan (sizes are relative)."""
    shape = anatomy.lung.shape
    t = ((np.arange(shape[0]) + 0.5) / shape[0])[:, None, None]
    y_span = float(anatomy.y_mm[-1] - anatomy.y_mm[0]) or 1.0
    posterior = ((anatomy.y_mm - anatomy.y_mm[0]) / y_span)[None, :, None]
    z_span = float(anatomy.z_mm[-1] - anatomy.z_mm[0])
    y_scale = y_span / 10.0
    diag = diagnosis or ("COVID" if rng.random() < 0.5 else "CAP")
    atypical = rng.random() < 0.2  # borrows the other class's look

    lesions: list[Lesion] = []
    if diag == "COVID":
        n = int(rng.integers(3, 9))
        peripheral = anatomy.lung & (anatomy.rim > 0.65) & (anatomy.rim < 0.97)
        weights = np.broadcast_to(1.0 + 1.5 * posterior + 1.0 * (1.0 - t), shape)
        sides = [1 + (i % 2) for i in range(n)]  # alternate lungs: bilateral
        for i, side in enumerate(sides):
            cand = peripheral & (anatomy.side == side)
            (centre,) = _pick_centres(anatomy, rng, cand, 1, weights)
            kind: LesionKind = "consolidation" if atypical and i % 3 == 0 else "ggo"
            base = y_scale * rng.uniform(0.5, 1.3)
            radii = (
                base * rng.uniform(0.8, 1.4) * max(z_span / (1.2 * y_span), 0.3),
                base * rng.uniform(0.6, 1.1),
                base * rng.uniform(0.6, 1.1),
            )
            lesions.append(Lesion(centre, radii, kind, 0.0))
    else:
        one_side = int(rng.integers(1, 3))
        lobar = rng.random() < 0.6 and not atypical
        n = 1 if lobar else int(rng.integers(1, 4))
        for i in range(n):
            side = one_side if (not atypical or i == 0) else 3 - one_side
            cand = anatomy.lung & (anatomy.side == side) & (anatomy.rim < 0.85)
            (centre,) = _pick_centres(anatomy, rng, cand, 1)
            kind = "ggo" if atypical else "consolidation"
            base = y_scale * (rng.uniform(1.2, 1.8) if lobar else rng.uniform(0.4, 0.9))
            radii = (
                base * rng.uniform(1.0, 1.6) * max(z_span / (1.2 * y_span), 0.3),
                base * rng.uniform(0.7, 1.3),
                base * rng.uniform(0.5, 0.9),
            )
            lesions.append(Lesion(centre, radii, kind, 0.0))

    chosen: list[Lesion] = []
    for lesion in lesions:
        kind = lesion.kind if pattern == "auto" else pattern
        chosen.append(Lesion(lesion.centre, lesion.radii, kind, _core_hu(kind, rng)))
    return chosen


def _scaled_distance(
    lesions: list[Lesion],
    points: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """Per point: min over lesions of the irregular normalised distance, and its owner."""
    pz, py, px = points
    dist = np.empty((len(lesions), pz.size), dtype=np.float32)
    for i, lesion in enumerate(lesions):
        cz, cy, cx = lesion.centre
        rz, ry, rx = (max(r, 1e-3) for r in lesion.radii)
        d = np.sqrt(((pz - cz) / rz) ** 2 + ((py - cy) / ry) ** 2 + ((px - cx) / rx) ** 2)
        # A few low-frequency ripples make the outline lumpy instead of ellipsoidal.
        k = rng.normal(0.0, 1.0, size=(3, 3)) / (0.6 * max(rz, ry, rx))
        phase = rng.uniform(0.0, 2 * np.pi, size=3)
        ripple = sum(
            np.sin(k[j, 0] * (pz - cz) + k[j, 1] * (py - cy) + k[j, 2] * (px - cx) + phase[j])
            for j in range(3)
        )
        dist[i] = d * (1.0 + 0.06 * ripple)
    owner = np.argmin(dist, axis=0)
    return dist[owner, np.arange(pz.size)], owner


def apply_lesions(
    anatomy: Anatomy,
    hu: NDArray[np.float32],
    lesions: list[Lesion],
    target_ratio: float,
    rng: np.random.Generator,
) -> NDArray[np.bool_]:
    """Paint `lesions` into `hu` (in place) so infection/lung ~= target_ratio.

    Returns the infection mask: exactly the lung voxels that received lesion
    intensity. A positive target always marks at least one voxel.
    """
    infection = np.zeros(anatomy.lung.shape, dtype=bool)
    lung_idx = np.flatnonzero(anatomy.lung)
    count = int(round(target_ratio * lung_idx.size))
    if target_ratio > 0:
        count = max(count, 1)
    count = min(count, lung_idx.size)
    if count == 0 or not lesions:
        return infection
    zi, yi, xi = np.unravel_index(lung_idx, anatomy.lung.shape)
    points = (anatomy.z_mm[zi], anatomy.y_mm[yi], anatomy.x_mm[xi])
    dist, owner = _scaled_distance(lesions, points, rng)
    order = np.argpartition(dist, count - 1)[:count]
    scale = float(dist[order].max()) or 1e-6
    inside = np.zeros(lung_idx.size, dtype=bool)
    inside[order] = True

    idx = lung_idx[inside]
    own = owner[inside]
    softness = np.array([_SOFTNESS[lesion.kind] for lesion in lesions], dtype=np.float32)
    core = np.array([lesion.core_hu for lesion in lesions], dtype=np.float32)
    alpha = np.clip(_BORDER_OPACITY + (1.0 - dist[inside] / scale) / softness[own], 0.0, 1.0)
    texture = rng.normal(0.0, 25.0, size=idx.size).astype(np.float32)
    flat = hu.reshape(-1)
    base = flat[idx]
    # Vessels brighter than the lesion stay visible through it, as in real GGO.
    flat[idx] = base + alpha * np.maximum(core[own] + texture - base, 0.0)
    infection.reshape(-1)[idx] = True
    return infection
