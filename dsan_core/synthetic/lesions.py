"""Where pneumonia lesions go and how they look, per diagnosis and infection ratio.

Conventions: coordinates are (z, y, x) mm; HU as in the CT.

How a lesion LOOKS does not depend on the diagnosis, only on the infection's extent,
its "maturity" m (0 below a ratio of 0.002, 1 above 0.05, log-linear between):
`appearance` draws every lesion's core and halo HU, core fraction, softness and crazy
paving from one distribution for COVID and CAP alike. Small infections are ground
glass (GGO, core -720..-370 HU); consolidation (core -260..+20 HU inside a GGO halo)
and crazy paving become likelier with extent (a lesion is consolidated with
probability 0.05 + 0.55 m), and GGO cores grow denser with m: lesions get denser
with size, never the reverse. So the lung's HU histogram carries the ratio and the
maturity, and nothing about the label beyond them.

What tells the diseases apart is where the lesions are and how they are arranged,
at every size (`LOOKS`, chosen per scan):
  subpleural           2-12 GGO/consolidation patches flattened against the costal
                       pleura (rim 0.86-0.98), posterior and lower zones preferred,
                       usually in both lungs (the second patch goes to the other
                       lung 80 % of the time): COVID-19's typical look.
  lobar                one (25 %: two neighbouring) round opacity around a central
                       bronchovascular bundle of one lower-zone lung, growing out to
                       lobar size with extent: CAP.
  bronchopneumonia     3-8 small nodules along one central airway of one lung (25 %
                       also along the mirror airway of the other lung): CAP.
  peribronchovascular  2-5 opacities around central bundles, mostly one lung:
                       viral-like CAP, and atypical COVID.
  early                one or two patches anywhere, the look both share; it replaces
                       the class's look with probability 0.10 (1 - m) only, so even
                       a tiny COVID lesion mostly hugs the pleura and a tiny CAP
                       lesion sits centrally.
COVID is subpleural 88 %, peribronchovascular 8 %, lobar 4 %; CAP lobar 42 %,
bronchopneumonia 32 %, peribronchovascular 18 %, subpleural 8 % (`LOOK_MIX`). These
overlaps are the honest part: location separates the classes well but not perfectly
(`benchmarks/cohort_difficulty.py` measures how well, from the ground-truth masks).
`pattern` "ggo" / "consolidation" forces every lesion to that plain look (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dsan_core.synthetic.anatomy import ChestLayout, LungShape
from dsan_core.synthetic.placement import Point, bundle_point, sample_lung_point
from dsan_core.synthetic.ratios import Diagnosis

Pattern = Literal["auto", "ggo", "consolidation"]
Look = Literal["subpleural", "lobar", "bronchopneumonia", "peribronchovascular", "early"]
LOOKS: tuple[Look, ...] = ("subpleural", "lobar", "bronchopneumonia", "peribronchovascular",
                           "early")
#: Each class's looks and their probabilities (before the shared early look).
LOOK_MIX: dict[Diagnosis, dict[Look, float]] = {
    "COVID": {"subpleural": 0.88, "peribronchovascular": 0.08, "lobar": 0.04},
    "CAP": {"lobar": 0.42, "bronchopneumonia": 0.32, "peribronchovascular": 0.18,
            "subpleural": 0.08},
}
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
    `phases` make the outline irregular; `side` is the lung it stays in (1 right,
    2 left, 0 either).
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
    side: int = 0


@dataclass(frozen=True)
class Appearance:
    """How a lesion looks inside: core and halo HU, core fraction, softness, paving HU."""

    core_hu: float
    halo_hu: float
    core_fraction: float
    softness: float
    paving_hu: float


def maturity(ratio: float) -> float:
    """0 for infections below 0.002 of the lung, 1 above 0.05, log-linear between."""
    lo, hi = MATURITY_RATIOS
    if ratio <= lo:
        return 0.0
    return float(min(np.log(ratio / lo) / np.log(hi / lo), 1.0))


def consolidation_probability(m: float) -> float:
    """Chance that a lesion of an infection of maturity m has a consolidated core."""
    return 0.05 + 0.55 * m


def early_probability(m: float) -> float:
    """Chance that a scan of maturity m shows the shared early look, not its class's."""
    return 0.10 * (1.0 - m)


def appearance(rng: np.random.Generator, m: float) -> Appearance:
    """One lesion's look at maturity m: the same distribution for every diagnosis."""
    if rng.random() < consolidation_probability(m):
        core = rng.uniform(-260.0, -40.0) + 60.0 * m
        fraction = rng.uniform(0.15, 0.4) + 0.2 * m
        paving = 0.0
        softness = 0.6
    else:
        core = rng.uniform(-720.0, -520.0) + 150.0 * m
        fraction = rng.uniform(0.2, 0.5)
        paving = rng.uniform(150.0, 300.0) if rng.random() < 0.05 + 0.45 * m else 0.0
        softness = 0.9
    halo = max(min(core, -480.0) - rng.uniform(60.0, 150.0), HALO_MIN_HU)
    return Appearance(float(core), float(halo), float(fraction), softness, float(paving))


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
           centre: Point, size: float, axes: tuple[Range, Range, Range]) -> _Shape:
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


def _unit(layout: ChestLayout) -> float:
    """A fifth of the lungs' antero-posterior semi-axis: the base lesion size (mm)."""
    return 0.5 * (layout.lungs[0].ay + layout.lungs[1].ay) / 5.0


ROUND: tuple[Range, Range, Range] = ((0.9, 1.4), (0.8, 1.2), (0.8, 1.2))
#: Flattened against the pleura: thin radially, wide along the surface and in z.
SUBPLEURAL: tuple[Range, Range, Range] = ((1.0, 1.6), (0.4, 0.65), (0.9, 1.4))
#: Lobar: taller than wide, grows out along its lobe.
LOBAR: tuple[Range, Range, Range] = ((1.0, 1.6), (0.8, 1.3), (0.8, 1.3))
#: Where a look's lesions sit, in rim units (0 lung core .. 1 costal pleura).
PLEURAL_RIM: Range = (0.86, 0.98)
CENTRAL_RIM: Range = (0.15, 0.6)

Site = tuple[int, Point, _Shape]


def _subpleural(layout: ChestLayout, rng: np.random.Generator, m: float) -> list[Site]:
    n = int(min(2 + rng.poisson(0.5 + 4.0 * m), 12))
    code = int(rng.integers(1, 3))
    sites = []
    for i in range(n):
        if i == 1 and rng.random() < 0.8 or i > 1 and rng.random() < 0.5:
            code = 3 - code
        code, centre = sample_lung_point(layout, rng, code, PLEURAL_RIM, "posterior_lower")
        size = _unit(layout) * rng.uniform(0.5, 1.3)
        sites.append((code, centre, _shape(layout, rng, code, centre, size, SUBPLEURAL)))
    return sites


def _lobar(layout: ChestLayout, rng: np.random.Generator, m: float) -> list[Site]:
    code = int(rng.integers(1, 3))
    unit = _unit(layout)
    code, first, _ = bundle_point(layout, rng, code, (0.15, 0.55), 0.3 * unit, "lower")
    sites = [(code, first, _shape(layout, rng, code, first, unit * rng.uniform(0.9, 1.4),
                                  LOBAR))]
    if rng.random() < 0.25:
        code, centre = sample_lung_point(layout, rng, code, (0.15, 0.7), "lower", first,
                                         1.2 * unit)
        sites.append((code, centre, _shape(layout, rng, code, centre,
                                           unit * rng.uniform(0.7, 1.1), LOBAR)))
    return sites


def _bronchopneumonia(layout: ChestLayout, rng: np.random.Generator, m: float) -> list[Site]:
    unit = _unit(layout)
    code = int(rng.integers(1, 3))
    code, _, segment = bundle_point(layout, rng, code, CENTRAL_RIM, 0.3 * unit, "lower")
    sides = [(code, segment)]
    if rng.random() < 0.25:
        other, _, mirror = bundle_point(layout, rng, 3 - code, CENTRAL_RIM, 0.3 * unit, "lower")
        sides.append((other, mirror))
    sites = []
    for i in range(int(rng.integers(3, 9))):
        side, seg = sides[0] if i % 3 != 2 or len(sides) == 1 else sides[1]
        side, centre, _ = bundle_point(layout, rng, side, (0.1, 0.8), 0.3 * unit,
                                       segment=seg if seg >= 0 else None)
        size = unit * rng.uniform(0.25, 0.55)
        sites.append((side, centre, _shape(layout, rng, side, centre, size, ROUND)))
    return sites


def _peribronchovascular(layout: ChestLayout, rng: np.random.Generator, m: float
                         ) -> list[Site]:
    unit = _unit(layout)
    code = int(rng.integers(1, 3))
    sites = []
    for i in range(int(rng.integers(2, 6))):
        side = code if i == 0 or rng.random() < 0.7 else 3 - code
        side, centre, _ = bundle_point(layout, rng, side, CENTRAL_RIM, 0.25 * unit)
        size = unit * rng.uniform(0.5, 1.0)
        sites.append((side, centre, _shape(layout, rng, side, centre, size, ROUND)))
    return sites


def _early(layout: ChestLayout, rng: np.random.Generator, m: float) -> list[Site]:
    code = int(rng.integers(1, 3))
    sites = []
    for i in range(1 + int(rng.random() < 0.4)):
        side = code if i == 0 or rng.random() < 0.6 else 3 - code
        side, centre = sample_lung_point(layout, rng, side, (0.3, 0.97), "lower")
        size = _unit(layout) * rng.uniform(0.5, 1.1)
        sites.append((side, centre, _shape(layout, rng, side, centre, size,
                                           ((0.9, 1.4), (0.7, 1.1), (0.8, 1.3)))))
    return sites


_PLACERS = {"subpleural": _subpleural, "lobar": _lobar, "bronchopneumonia": _bronchopneumonia,
            "peribronchovascular": _peribronchovascular, "early": _early}


def choose_look(rng: np.random.Generator, diagnosis: Diagnosis, m: float) -> Look:
    """The scan's look: the shared early one with `early_probability(m)`, else its class's."""
    if rng.random() < early_probability(m):
        return "early"
    mix = LOOK_MIX[diagnosis]
    looks = list(mix)
    weights = np.array([mix[look] for look in looks])
    return looks[int(rng.choice(len(looks), p=weights / weights.sum()))]


def _plain(lesion: Lesion, pattern: Pattern, rng: np.random.Generator) -> Lesion:
    lo, hi = GGO_HU if pattern == "ggo" else CONSOLIDATION_HU
    # Keep the core inside the range even after blending and texture.
    core = float(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))
    softness = 0.9 if pattern == "ggo" else 0.25
    return Lesion(lesion.centre, lesion.radii, lesion.angle, core, core, 1.0, softness, 0.0,
                  lesion.waves, lesion.phases, lesion.side)


def place_lesions(layout: ChestLayout, rng: np.random.Generator, look: Look, m: float
                  ) -> tuple[Lesion, ...]:
    """Lesions of one look at maturity m: its placement, then `appearance` per lesion."""
    lesions = []
    for side, centre, shape in _PLACERS[look](layout, rng, m):
        a = appearance(rng, m)
        lesions.append(Lesion(centre, shape.radii, shape.angle, a.core_hu, a.halo_hu,
                              a.core_fraction, a.softness, a.paving_hu, shape.waves,
                              shape.phases, side))
    return tuple(lesions)


def plan_lesions(layout: ChestLayout, rng: np.random.Generator, diagnosis: Diagnosis | None,
                 target_ratio: float, *, pattern: Pattern = "auto") -> tuple[Lesion, ...]:
    """Choose lesion centres, shapes and looks for one scan (sizes are relative)."""
    diag: Diagnosis = diagnosis or ("COVID" if rng.random() < 0.5 else "CAP")
    m = maturity(target_ratio)
    lesions = place_lesions(layout, rng, choose_look(rng, diag, m), m)
    if pattern != "auto":
        lesions = tuple(_plain(lesion, pattern, rng) for lesion in lesions)
    return lesions
