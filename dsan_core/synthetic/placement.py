"""Where in the lungs things go: random lung points by depth, zone and neighbourhood.

Conventions: points are (z, y, x) mm in the layout's frame (`anatomy`); a lung code
is 1 (right lung) or 2 (left); `rim` is the normalised depth of `anatomy.lung_field`,
0 at a lung's core and about 1 at its costal pleura. Lesions (`lesions`) and
distractors (`distractors`) are placed with these.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dsan_core.errors import ConfigError
from dsan_core.synthetic.anatomy import ChestLayout, lung_field, relative_height

Point = tuple[float, float, float]
#: Where points are preferred: anywhere, posterior and lower zones, lower zones.
Weighting = Literal["none", "posterior_lower", "lower"]
_BATCH = 4096


def _zone_weight(layout: ChestLayout, pts: np.ndarray, weight: Weighting) -> np.ndarray:
    if weight == "none":
        return np.ones(len(pts))
    t = relative_height(layout, pts[:, 0])
    if weight == "lower":
        return 1.0 + 2.0 * (1.0 - t)
    lung = layout.lungs[0]
    posterior = np.clip((pts[:, 1] - (lung.cy - lung.ay)) / (2 * lung.ay), 0.0, 1.0)
    return 1.0 + 3.0 * posterior**2 + 1.5 * (1.0 - t)


def _pick(layout: ChestLayout, rng: np.random.Generator, pts: np.ndarray, ok: np.ndarray,
          code: np.ndarray, weight: Weighting, near: Point | None, spread: float
          ) -> tuple[int, Point] | None:
    w = ok * _zone_weight(layout, pts, weight)
    if near is not None:
        d2 = ((pts - np.array(near, dtype=np.float32)) ** 2).sum(axis=1)
        w = w * np.exp(-d2 / (2 * spread**2))
    if w.sum() <= 0:
        return None
    i = int(rng.choice(w.size, p=w / w.sum()))
    z, y, x = (float(v) for v in pts[i])
    return int(code[i]), (z, y, x)


def sample_lung_point(layout: ChestLayout, rng: np.random.Generator, side: int | None,
                      rim: tuple[float, float], weight: Weighting = "none",
                      near: Point | None = None, spread: float = 0.0) -> tuple[int, Point]:
    """A lung point and its lung code by rejection sampling; `side` None takes either lung.

    The rim band and side are relaxed after six tries and `near` after four, so a
    point always comes back when the lungs have any voxel at all.
    """
    nz, ny, nx = layout.shape
    sx, sy, sz = layout.spacing
    half = np.array([nz * sz, ny * sy, nx * sx], dtype=np.float32) / 2
    for attempt in range(8):
        pts = (rng.uniform(-1.0, 1.0, size=(_BATCH, 3)) * half).astype(np.float32)
        code, r = lung_field(layout, pts[:, 0], pts[:, 1], pts[:, 2])
        ok = code > 0
        if attempt < 6:
            ok &= (r >= rim[0]) & (r <= rim[1])
            if side is not None:
                ok &= code == side
        found = _pick(layout, rng, pts, ok, code, weight, near if attempt < 4 else None,
                      spread)
        if found is not None:
            return found
    raise ConfigError(f"phantom shape {layout.shape} at spacing {layout.spacing} mm leaves no "
                      "lung to place a lesion in")


def bundle_point(layout: ChestLayout, rng: np.random.Generator, side: int | None,
                 rim: tuple[float, float], jitter_mm: float, weight: Weighting = "none",
                 segment: int | None = None) -> tuple[int, Point, int]:
    """A point beside a bronchovascular bundle (a vessel segment of the layout).

    The point lies off the vessel's wall, in a random direction across it, by
    |N(0, jitter_mm)|, so that a lesion grows around the bundle rather than on it.
    Returns the lung code, the point and the segment's index; `segment` keeps to one
    segment (a little beyond its ends too), as bronchopneumonia follows one airway.
    Falls back to `sample_lung_point` when no bundle passes the side and rim band.
    """
    segments = np.array([(*a, *b, r) for a, b, r in layout.vessels], dtype=np.float32)
    for _ in range(4):
        if segment is None:
            k = rng.integers(0, len(segments), size=_BATCH)
            t = rng.uniform(0.0, 1.0, size=_BATCH)
        else:
            k = np.full(_BATCH, segment)
            t = rng.uniform(-0.3, 1.3, size=_BATCH)
        a, b, radius = segments[k, :3], segments[k, 3:6], segments[k, 6]
        axis = (b - a) / np.maximum(np.linalg.norm(b - a, axis=1, keepdims=True), 1e-6)
        across = rng.normal(size=(_BATCH, 3))
        across -= (across * axis).sum(axis=1, keepdims=True) * axis
        across /= np.maximum(np.linalg.norm(across, axis=1, keepdims=True), 1e-6)
        offset = radius + np.abs(rng.normal(0.0, jitter_mm, size=_BATCH))
        pts = (a + t[:, None] * (b - a) + offset[:, None] * across).astype(np.float32)
        code, r = lung_field(layout, pts[:, 0], pts[:, 1], pts[:, 2])
        ok = (code > 0) & (r >= rim[0]) & (r <= rim[1])
        if side is not None:
            ok &= code == side
        w = ok * _zone_weight(layout, pts, weight)
        if w.sum() > 0:
            i = int(rng.choice(w.size, p=w / w.sum()))
            z, y, x = (float(v) for v in pts[i])
            return int(code[i]), (z, y, x), int(k[i])
    code_, point = sample_lung_point(layout, rng, side, rim, weight)
    return code_, point, -1
