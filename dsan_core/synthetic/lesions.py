"""Where pneumonia lesions go and how they look, per diagnosis and infection ratio.

Conventions: coordinates are (z, y, x) mm; HU as in the CT. The look follows the
radiology of the two diseases, with the overlap real disease has; everything that
tells them apart grows with the infection's extent, its "maturity" m (0 below a
ratio of 0.002, 1 above 0.05, log-linear between), so small infections are the hard
cases, as in the paper. A scan shows its disease's own pattern with probability
0.25 + 0.65 m, otherwise the early look both share: one or two GGO or part-solid
patches anywhere in the lungs.

COVID-19: multifocal, bilateral, peripheral (subpleural) opacities flattened
  against the pleura, posterior and lower zones preferred. Ground glass (GGO) early;
  crazy paving (septal lines over GGO) and consolidation inside the GGO appear with
  extent. One in five is atypical: central, mostly unilateral, often consolidated.
CAP: lobar/segmental consolidation with a GGO halo (45 %), patchy bronchopneumonia
  of mixed nodules clustered along one lower-zone airway, sometimes both sides
  (35 %), or a GGO-dominant viral-like pattern around the bronchovascular bundles
  (20 %). Small CAP lesions are part-solid: their cores reach full consolidation only
  with extent.

So lesion HU alone does not separate the classes (COVID consolidates, CAP has halos
and GGO); how many lesions, where and on which side does, increasingly with extent.
`benchmarks/cohort_difficulty.py` measures how much. `pattern` "ggo" / "consolidation"
forces every lesion to that plain look (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dsan_core.errors import ConfigError
from dsan_core.synthetic.anatomy import ChestLayout, LungShape, lung_field, relative_height
from dsan_core.synthetic.ratios import Diagnosis

Pattern = Literal["auto", "ggo", "consolidation"]
#: Where lesion centres are preferred: anywhere, posterior and lower zones, lower zones.
Weighting = Literal["none", "posterior_lower", "lower"]

#: HU range of a lesion core, per plain kind.
GGO_HU: tuple[float, float] = (-700.0, -300.0)
CONSOLIDATION_HU: tuple[float, float] = (-100.0, 50.0)
#: The faintest a lesion's border gets (HU before blending with the parenchyma).
HALO_MIN_HU = -720.0
#: Infection ratios at which a lesion plan is fully immature (0) and mature (1).
MATURITY_RATIOS: tuple[float, float] = (0.002, 0.05)


@dataclass(frozen=True)
class Lesion:
    """One lesion (see `infection` for how these fields are painted).

    `radii` are (z, radial, tangential) mm before the common scale; `angle` is the
    in-plane direction of the radial axis (from +x towards +y); `waves` (1/mm) and
    `phases` make the outline irregular.
    """

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    angle: float
    core_hu: float
    halo_hu: float
    core_fraction: float
    softness: float
    paving_hu: float
    waves: tuple[tuple[float, float, float], ...]
    phases: tuple[float, ...]


def maturity(ratio: float) -> float:
    """0 for infections below 0.002 of the lung, 1 above 0.05, log-linear between."""
    lo, hi = MATURITY_RATIOS
    if ratio <= lo:
        return 0.0
    return float(min(np.log(ratio / lo) / np.log(hi / lo), 1.0))


def _sample_point(layout: ChestLayout, rng: np.random.Generator, side: int | None,
                  rim: tuple[float, float], weight: Weighting = "none",
                  near: tuple[float, float, float] | None = None, spread: float = 0.0,
                  ) -> tuple[int, tuple[float, float, float]]:
    """A lung point (rejection sampling in mm), its lung code; falls back to any lung point."""
    nz, ny, nx = layout.shape
    sx, sy, sz = layout.spacing
    half = np.array([nz * sz, ny * sy, nx * sx], dtype=np.float32) / 2
    for attempt in range(8):
        pts = (rng.uniform(-1.0, 1.0, size=(4096, 3)) * half).astype(np.float32)
        code, r = lung_field(layout, pts[:, 0], pts[:, 1], pts[:, 2])
        ok = code > 0
        if attempt < 6:
            ok &= (r >= rim[0]) & (r <= rim[1])
            if side is not None:
                ok &= code == side
        w = ok.astype(np.float64)
        if weight == "posterior_lower":
            t = relative_height(layout, pts[:, 0])
            posterior = (pts[:, 1] + half[1]) / (2 * half[1])
            w *= 1.0 + 1.5 * posterior + 1.0 * (1.0 - t)
        elif weight == "lower":
            w *= 1.0 + 2.0 * (1.0 - relative_height(layout, pts[:, 0]))
        if near is not None and attempt < 4:
            d2 = ((pts - np.array(near, dtype=np.float32)) ** 2).sum(axis=1)
            w *= np.exp(-d2 / (2 * spread**2))
        if w.sum() > 0:
            i = int(rng.choice(w.size, p=w / w.sum()))
            z, y, x = (float(v) for v in pts[i])
            return int(code[i]), (z, y, x)
    raise ConfigError(f"phantom shape {layout.shape} at spacing {layout.spacing} mm leaves no "
                      "lung to place a lesion in")


def _lung(layout: ChestLayout, code: int) -> LungShape:
    return layout.lungs[0] if code != 2 else layout.lungs[1]


@dataclass(frozen=True)
class _Shape:
    radii: tuple[float, float, float]
    angle: float
    waves: tuple[tuple[float, float, float], ...]
    phases: tuple[float, ...]


Range = tuple[float, float]


def _shape(layout: ChestLayout, rng: np.random.Generator, code: int,
           centre: tuple[float, float, float], size: float, axes: tuple[Range, Range, Range],
           ) -> _Shape:
    """Radii (z, radial, tangential) from `axes` x `size` mm, orientation and ripple."""
    lung = _lung(layout, code)
    z_scale = float(np.clip(layout.z_extent / (2.2 * lung.ay), 0.3, 1.5))
    (z0, z1), (r0, r1), (t0, t1) = axes
    radii = (size * rng.uniform(z0, z1) * z_scale, size * rng.uniform(r0, r1),
             size * rng.uniform(t0, t1))
    angle = float(np.arctan2(centre[1] - lung.cy, centre[2] - lung.cx))
    k = rng.normal(0.0, 1.0, size=(3, 3)) / (0.6 * max(radii))
    waves = tuple((float(a), float(b), float(c)) for a, b, c in k)
    phases = tuple(float(p) for p in rng.uniform(0.0, 2 * np.pi, size=3))
    return _Shape(radii, angle, waves, phases)


def _lesion(centre: tuple[float, float, float], shape: _Shape, core: float, halo: float,
            core_fraction: float, softness: float, paving: float = 0.0) -> Lesion:
    return Lesion(centre, shape.radii, shape.angle, float(core), float(max(halo, HALO_MIN_HU)),
                  float(core_fraction), softness, float(paving), shape.waves, shape.phases)


def _unit(layout: ChestLayout) -> float:
    """A fifth of the lungs' antero-posterior semi-axis: the base lesion size (mm)."""
    return 0.5 * (layout.lungs[0].ay + layout.lungs[1].ay) / 5.0


ROUND: tuple[Range, Range, Range] = ((0.9, 1.4), (0.8, 1.2), (0.8, 1.2))
#: Flattened against the pleura: thin radially, wide along the surface and in z.
SUBPLEURAL: tuple[Range, Range, Range] = ((1.0, 1.6), (0.45, 0.7), (0.9, 1.4))


def _covid(layout: ChestLayout, rng: np.random.Generator, m: float) -> list[Lesion]:
    atypical = rng.random() < 0.2
    n = int(min(1 + rng.poisson(0.8 + 5.0 * m), 10))
    code = int(rng.integers(1, 3))
    lesions = []
    for i in range(n):
        if i and rng.random() < (0.1 if atypical else 0.6):
            code = 3 - code
        rim = (0.2, 0.7) if atypical else (0.78, 0.97)
        code, centre = _sample_point(layout, rng, code, rim, "posterior_lower")
        shape = _shape(layout, rng, code, centre, _unit(layout) * rng.uniform(0.5, 1.3),
                       ROUND if atypical else SUBPLEURAL)
        core, fraction, softness = rng.uniform(-680.0, -480.0), rng.uniform(0.2, 0.5), 0.9
        paving = rng.uniform(150.0, 300.0) if rng.random() < 0.1 + 0.5 * m else 0.0
        if rng.random() < (0.5 if atypical else 0.05 + 0.45 * m):
            # Later stage: consolidation inside the ground glass.
            core, fraction, softness = rng.uniform(-200.0, -20.0), rng.uniform(0.15, 0.4), 0.6
            paving *= 0.5
        halo = min(core, -480.0) - rng.uniform(60.0, 150.0)
        lesions.append(_lesion(centre, shape, core, halo, fraction, softness, paving))
    return lesions


def _cap(layout: ChestLayout, rng: np.random.Generator, m: float) -> list[Lesion]:
    kind = rng.choice(3, p=[0.45, 0.35, 0.20])
    code = int(rng.integers(1, 3))
    unit = _unit(layout)
    lesions = []
    if kind == 0:  # lobar / segmental consolidation with a GGO halo
        for _ in range(1 + int(rng.random() < 0.25)):
            code, centre = _sample_point(layout, rng, code, (0.3, 0.8), "lower")
            shape = _shape(layout, rng, code, centre, unit * rng.uniform(0.9, 1.4),
                           ((1.0, 1.5), (0.8, 1.2), (0.8, 1.2)))
            # Part-solid while small, solid once extensive.
            core = rng.uniform(-80.0, 40.0) + (1.0 - m) * rng.uniform(150.0, 450.0)
            lesions.append(_lesion(centre, shape, core, rng.uniform(-620.0, -450.0),
                                   rng.uniform(0.4, 0.6) + 0.25 * m, 0.4))
    elif kind == 1:  # bronchopneumonia: mixed nodules along one lower-zone airway
        _, anchor = _sample_point(layout, rng, code, (0.3, 0.6), "lower")
        both = rng.random() < 0.3
        for i in range(int(rng.integers(3, 10))):
            side = 3 - code if both and i % 3 == 2 else code
            near = anchor if side == code else (anchor[0], anchor[1], -anchor[2])
            side, centre = _sample_point(layout, rng, side, (0.25, 0.9), "lower", near,
                                         0.9 * unit)
            shape = _shape(layout, rng, side, centre, unit * rng.uniform(0.25, 0.55), ROUND)
            core = rng.uniform(-450.0, -50.0) + (1.0 - m) * rng.uniform(0.0, 200.0)
            lesions.append(_lesion(centre, shape, core, rng.uniform(-650.0, -500.0),
                                   rng.uniform(0.2, 0.6), 0.5))
    else:  # GGO-dominant, around the bronchovascular bundles
        for i in range(int(rng.integers(2, 6))):
            side = code if i == 0 or rng.random() < 0.6 else 3 - code
            side, centre = _sample_point(layout, rng, side, (0.25, 0.75))
            shape = _shape(layout, rng, side, centre, unit * rng.uniform(0.5, 1.1), ROUND)
            core = rng.uniform(-650.0, -400.0)
            paving = rng.uniform(100.0, 250.0) if rng.random() < 0.2 else 0.0
            lesions.append(_lesion(centre, shape, core, core - rng.uniform(60.0, 150.0),
                                   rng.uniform(0.2, 0.5), 0.9, paving))
    return lesions


def _early(layout: ChestLayout, rng: np.random.Generator) -> list[Lesion]:
    """The look both diseases can have early: one or two GGO or part-solid patches anywhere."""
    code = int(rng.integers(1, 3))
    lesions = []
    for i in range(1 + int(rng.random() < 0.4)):
        side = code if i == 0 or rng.random() < 0.6 else 3 - code
        side, centre = _sample_point(layout, rng, side, (0.3, 0.97), "lower")
        shape = _shape(layout, rng, side, centre, _unit(layout) * rng.uniform(0.5, 1.1),
                       ((0.9, 1.4), (0.7, 1.1), (0.8, 1.3)))
        core = rng.uniform(-680.0, -150.0)
        halo = min(core, -450.0) - rng.uniform(60.0, 150.0)
        lesions.append(_lesion(centre, shape, core, halo, rng.uniform(0.2, 0.5), 0.7))
    return lesions


def _plain(lesion: Lesion, pattern: Pattern, rng: np.random.Generator) -> Lesion:
    lo, hi = GGO_HU if pattern == "ggo" else CONSOLIDATION_HU
    # Keep the core inside the range even after blending and texture.
    core = float(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))
    softness = 0.9 if pattern == "ggo" else 0.25
    return Lesion(lesion.centre, lesion.radii, lesion.angle, core, core, 1.0, softness, 0.0,
                  lesion.waves, lesion.phases)


def typical_probability(m: float) -> float:
    """Chance that a scan of maturity m shows its disease's own pattern, not the early look."""
    return 0.25 + 0.65 * m


def plan_lesions(layout: ChestLayout, rng: np.random.Generator, diagnosis: Diagnosis | None,
                 target_ratio: float, *, pattern: Pattern = "auto") -> tuple[Lesion, ...]:
    """Choose lesion centres, shapes and looks for one scan (sizes are relative)."""
    diag = diagnosis or ("COVID" if rng.random() < 0.5 else "CAP")
    m = maturity(target_ratio)
    if rng.random() >= typical_probability(m):
        lesions = _early(layout, rng)
    else:
        lesions = _covid(layout, rng, m) if diag == "COVID" else _cap(layout, rng, m)
    if pattern != "auto":
        lesions = [_plain(lesion, pattern, rng) for lesion in lesions]
    return tuple(lesions)
