"""Dense lung findings that are not infection: the cohort's label-independent distractors.

Conventions: slabs are (z, y, x) float32 HU, points (z, y, x) mm as in `anatomy`.

Real chests are not clean air plus pneumonia: the dependent lung is denser, the bases
collapse a little, old scars and granulomas stay. Each scan draws these from its own
generator (`draw_distractors`, seeded apart from the lesions), so their amount never
depends on the diagnosis, and they are wide enough that a scan's mean lung density and
its HU histogram vary with them as much as with the infection:
  dependent density  the parenchyma grows denser towards the back, by 0-160 HU at the
                     most posterior lung (quadratically), under the lesions too;
  atelectasis        (65 % of scans) a sharp-edged band -100..+30 HU, up to 16 mm
                     thick at the base (each lung its own share of one thickness),
                     along the posterior pleura of the lung bases, thinning upwards;
                     denser and thinner than ground glass, with no halo;
  linear scars       0-4 plates 1.5-3 mm thick, 10-28 mm in radius, -300..-50 HU;
  granulomas         0-3 calcified balls of 1.5-3 mm radius, +250..+700 HU.
Scars and granulomas are at least about a voxel thick, so they show at any spacing.
All but the dependent density are painted after the lesions and only on lung voxels
outside the infection mask (`paint_distractors`): they never enter it, and the
infection ratio is the lesions' alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsan_core.synthetic.anatomy import Anatomy, ChestLayout, relative_height
from dsan_core.synthetic.placement import Point, sample_lung_point

FloatArray = NDArray[np.float32]
#: Lung voxels below this HU (before lesions) are parenchyma, above it vessels.
PARENCHYMA_MAX_HU = -500.0
#: Texture (HU) of atelectasis and scars.
TEXTURE_HU = 15.0


@dataclass(frozen=True)
class Scar:
    """A plate: centre, unit normal, radius and half thickness (mm), HU."""

    centre: Point
    normal: Point
    radius: float
    half_thickness: float
    hu: float


@dataclass(frozen=True)
class Granuloma:
    centre: Point
    radius: float
    hu: float


@dataclass(frozen=True)
class Distractors:
    """One scan's distractors (see the module docstring); `NO_DISTRACTORS` has none."""

    dependent_hu: float
    atelectasis_mm: tuple[float, float]  # band thickness at the base, right and left lung
    atelectasis_top: float  # relative height (0 bottom .. 1 top) where the bands end
    atelectasis_hu: float
    scars: tuple[Scar, ...]
    granulomas: tuple[Granuloma, ...]


NO_DISTRACTORS = Distractors(0.0, (0.0, 0.0), 0.0, 0.0, (), ())


def draw_distractors(layout: ChestLayout, rng: np.random.Generator) -> Distractors:
    """Draw one scan's distractors (amounts independent of anything but `rng`)."""
    dependent = float(rng.uniform(0.0, 160.0))
    atelectasis = (0.0, 0.0)
    top, atelectasis_hu = 0.0, 0.0
    if rng.random() < 0.65:
        thick = rng.uniform(3.0, 16.0)
        atelectasis = (float(thick * rng.uniform(0.5, 1.0)), float(thick * rng.uniform(0.5, 1.0)))
        top, atelectasis_hu = float(rng.uniform(0.3, 0.6)), float(rng.uniform(-100.0, 30.0))
    sx, sy, sz = layout.spacing
    voxel = min(sx, sy, sz)
    scars = []
    for _ in range(min(int(rng.poisson(1.2)), 4)):
        _, centre = sample_lung_point(layout, rng, None, (0.3, 0.95))
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal) or 1.0
        scars.append(Scar(centre, (float(normal[0]), float(normal[1]), float(normal[2])),
                          float(rng.uniform(10.0, 28.0)),
                          float(max(rng.uniform(0.75, 1.5), 0.5 * voxel)),
                          float(rng.uniform(-300.0, -50.0))))
    granulomas = []
    for _ in range(min(int(rng.poisson(0.8)), 3)):
        _, centre = sample_lung_point(layout, rng, None, (0.2, 0.95))
        granulomas.append(Granuloma(centre, float(max(rng.uniform(1.5, 3.0), 0.6 * voxel)),
                                    float(rng.uniform(250.0, 700.0))))
    return Distractors(dependent, atelectasis, top, atelectasis_hu, tuple(scars),
                       tuple(granulomas))


def _posterior(layout: ChestLayout, y: FloatArray) -> FloatArray:
    """0 at the lungs' front, 1 at their back (the lungs share their y extent)."""
    lung = layout.lungs[0]
    return np.clip((y - (lung.cy - lung.ay)) / (2 * lung.ay), 0.0, 1.0).astype(np.float32)


def add_dependent_density(layout: ChestLayout, anatomy: Anatomy, hu: FloatArray,
                          distractors: Distractors) -> None:
    """Make the slab's parenchyma (not its vessels) denser towards the back, in place."""
    if distractors.dependent_hu <= 0:
        return
    extra = distractors.dependent_hu * _posterior(layout, anatomy.y_mm) ** 2
    parenchyma = anatomy.lung & (hu < PARENCHYMA_MAX_HU)
    hu += np.where(parenchyma, extra[None, :, None], np.float32(0.0)).astype(np.float32)


def paint_distractors(layout: ChestLayout, anatomy: Anatomy, hu: FloatArray,
                      distractors: Distractors, infection: NDArray[np.bool_],
                      texture: FloatArray) -> None:
    """Paint atelectasis, scars and granulomas into lung voxels outside `infection`."""
    idx = np.flatnonzero(anatomy.lung & ~infection)
    if idx.size == 0:
        return
    zi, yi, xi = np.unravel_index(idx, hu.shape)
    z, y, x = anatomy.z_mm[zi], anatomy.y_mm[yi], anatomy.x_mm[xi]
    value = np.full(idx.size, -np.inf, dtype=np.float32)
    if max(distractors.atelectasis_mm) > 0:
        side = anatomy.side.reshape(-1)[idx]
        rim = anatomy.rim.reshape(-1)[idx]
        t = relative_height(layout, z)
        span = max(distractors.atelectasis_top - 0.1, 0.05)
        taper = np.clip((distractors.atelectasis_top - t) / span, 0.0, 1.0)
        thick = np.where(side == 1, distractors.atelectasis_mm[0], distractors.atelectasis_mm[1])
        lung = layout.lungs[0]
        depth = (1.0 - rim) * lung.ay  # mm to the pleura, along the posterior direction
        band = (depth < thick * np.sqrt(taper)) & (y > lung.cy + 0.15 * lung.ay)
        value[band] = distractors.atelectasis_hu
    for scar in distractors.scars:
        cz, cy, cx = scar.centre
        dz, dy, dx = z - cz, y - cy, x - cx
        along = dz * scar.normal[0] + dy * scar.normal[1] + dx * scar.normal[2]
        across2 = dz * dz + dy * dy + dx * dx - along * along
        plate = (np.abs(along) <= scar.half_thickness) & (across2 <= scar.radius**2)
        value[plate] = np.maximum(value[plate], scar.hu)
    for ball in distractors.granulomas:
        cz, cy, cx = ball.centre
        inside = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= ball.radius**2
        value[inside] = np.maximum(value[inside], ball.hu)
    hit = np.isfinite(value)
    if not hit.any():
        return
    flat = hu.reshape(-1)
    target = idx[hit]
    painted = value[hit] + TEXTURE_HU * texture.reshape(-1)[target]
    flat[target] = np.maximum(flat[target], painted)
