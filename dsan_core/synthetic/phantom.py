"""Phantom volumes: a realistic chest with lesions, and an analytic ellipsoid phantom.

Conventions: arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order);
`hu` is int16 HU, `lung` and `infection` are uint8 0/1 with infection inside lung.

A chest phantom is made in two passes over fixed slabs of `SLAB` slices, so memory is
bounded by a slab (plus one float per lung voxel) whatever the volume size: the first
pass finds where the lesions stop (`LesionCut`), the second renders each slab for
writing (`PhantomPlan.slabs`). Per slab: the anatomy, its dependent density, the
lesions, the other distractors outside the infection (`distractors`), then the site's
scanner (noise, in-plane kernel, HU offset; `scanner`). Noise and texture are seeded
per slice and the kernel works slice by slice, so a slab's voxels never depend on
which other slabs were made; `make_phantom` just stacks the slabs.

The random draws come in a fixed order from the plan's generator: the chest, the
noise and distractor seeds, then the lesions. So two plans from the same seed that
differ only in diagnosis differ only inside their infection masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsan_core.errors import ConfigError
from dsan_core.synthetic.anatomy import (
    LUNG_HU,
    ChestLayout,
    check_geometry,
    draw_layout,
    lung_slab,
    render_slab,
    voxel_axes,
)
from dsan_core.synthetic.distractors import (
    NO_DISTRACTORS,
    Distractors,
    add_dependent_density,
    draw_distractors,
    paint_distractors,
)
from dsan_core.synthetic.infection import (
    LesionCut,
    find_cut,
    lung_points,
    paint_lesions,
    scaled_distance,
)
from dsan_core.synthetic.lesions import Diagnosis, Lesion, Pattern, plan_lesions
from dsan_core.synthetic.scanner import Scanner, acquire

#: Stored CT values are HU + 1024 in 12 bits at some sites, so HU is kept in this range.
HU_MIN, HU_MAX = -1024, 3071
#: Slices per slab (fixed: the lesion cut is found on these very slabs).
SLAB = 16


@dataclass(frozen=True)
class Phantom:
    """A CT volume with its ground-truth masks; see the module docstring for conventions."""

    hu: NDArray[np.int16]
    lung: NDArray[np.uint8]
    infection: NDArray[np.uint8]
    spacing: tuple[float, float, float]

    @property
    def voxel_ml(self) -> float:
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0

    @property
    def lung_ml(self) -> float:
        return float(np.count_nonzero(self.lung)) * self.voxel_ml

    @property
    def infection_ml(self) -> float:
        return float(np.count_nonzero(self.infection)) * self.voxel_ml

    @property
    def infection_ratio(self) -> float:
        lung = np.count_nonzero(self.lung)
        return float(np.count_nonzero(self.infection & self.lung)) / lung if lung else 0.0


@dataclass(frozen=True)
class PhantomSlab:
    """Slices z0..z0+len-1 of a phantom (same conventions as `Phantom`)."""

    z0: int
    hu: NDArray[np.int16]
    lung: NDArray[np.uint8]
    infection: NDArray[np.uint8]


@dataclass(frozen=True)
class PhantomPlan:
    """Everything needed to render a phantom slab by slab, and its voxel counts."""

    layout: ChestLayout
    lesions: tuple[Lesion, ...]
    cut: LesionCut | None
    scanner: Scanner
    noise_seed: int
    distractors: Distractors
    lung_voxels: int
    infection_voxels: int

    @property
    def infection_ratio(self) -> float:
        return self.infection_voxels / self.lung_voxels if self.lung_voxels else 0.0

    def slabs(self) -> Iterator[PhantomSlab]:
        """Render the phantom a slab at a time, from the bottom slice up."""
        ties_seen = 0
        for z0 in range(0, self.layout.shape[0], SLAB):
            z1 = min(z0 + SLAB, self.layout.shape[0])
            anatomy = render_slab(self.layout, z0, z1)
            hu = anatomy.hu
            texture, noise = self._fields(z0, z1, hu.shape)
            add_dependent_density(self.layout, anatomy, hu, self.distractors)
            infection, ties_seen = paint_lesions(anatomy, hu, self.lesions, self.cut,
                                                 ties_seen, texture)
            paint_distractors(self.layout, anatomy, hu, self.distractors, infection, texture)
            hu = acquire(hu, noise, self.scanner, self.layout.spacing[0])
            yield PhantomSlab(
                z0=z0,
                hu=np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16),
                lung=anatomy.lung.astype(np.uint8),
                infection=(infection & anatomy.lung).astype(np.uint8),
            )

    def render(self) -> Phantom:
        """The whole phantom in memory (the slabs stacked)."""
        slabs = list(self.slabs())
        return Phantom(hu=np.concatenate([s.hu for s in slabs]),
                       lung=np.concatenate([s.lung for s in slabs]),
                       infection=np.concatenate([s.infection for s in slabs]),
                       spacing=self.layout.spacing)

    def _fields(self, z0: int, z1: int, shape: tuple[int, ...]
                ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Unit-normal lesion texture and CT noise, drawn per slice."""
        texture = np.empty(shape, dtype=np.float32)
        noise = np.empty(shape, dtype=np.float32)
        for k in range(z0, z1):
            rng = np.random.default_rng([self.noise_seed, k])
            texture[k - z0] = rng.standard_normal(shape[1:], dtype=np.float32)
            noise[k - z0] = rng.standard_normal(shape[1:], dtype=np.float32)
        return texture, noise


def plan_phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    diagnosis: Diagnosis | None,
    target_ratio: float,
    pattern: Pattern = "auto",
    noise_hu: float = 15.0,
    scanner: Scanner | None = None,
    distractors: bool = True,
) -> PhantomPlan:
    """Draw a chest, its distractors and lesions, and size the lesions to `target_ratio`.

    `scanner` is a site's pixel effects (default: white noise of `noise_hu`, no kernel,
    no offset); `distractors` False leaves out dependent density, atelectasis, scars
    and granulomas (tests that need a clean lung).
    """
    if not 0.0 <= target_ratio <= 1.0:
        raise ConfigError(f"target_ratio must be in [0, 1], got {target_ratio}")
    layout = draw_layout(shape, spacing, rng)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    distractor_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    found = draw_distractors(layout, distractor_rng) if distractors else NO_DISTRACTORS
    lesions = plan_lesions(layout, rng, diagnosis, target_ratio, pattern=pattern)
    parts = []
    for z0 in range(0, shape[0], SLAB):
        _, points, sides = lung_points(lung_slab(layout, z0, min(z0 + SLAB, shape[0])))
        parts.append(scaled_distance(lesions, points, sides)[0])
    distances = np.concatenate(parts)
    if distances.size == 0:
        raise ConfigError(f"phantom shape {shape} at spacing {spacing} leaves no lung voxels")
    count = int(round(target_ratio * distances.size))
    if target_ratio > 0:
        count = max(count, 1)  # a positive target always marks at least one voxel
    cut = find_cut(distances, count)
    return PhantomPlan(layout=layout, lesions=lesions, cut=cut,
                       scanner=scanner if scanner is not None else Scanner(noise_hu=noise_hu),
                       noise_seed=noise_seed, distractors=found,
                       lung_voxels=int(distances.size),
                       infection_voxels=min(count, int(distances.size)) if cut else 0)


def make_phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    diagnosis: Diagnosis | None,
    target_ratio: float,
    pattern: Pattern = "auto",
    noise_hu: float = 15.0,
    scanner: Scanner | None = None,
    distractors: bool = True,
) -> Phantom:
    """A whole chest CT phantom whose lesions cover `target_ratio` of the lung.

    Lesions have the look of `diagnosis` (`dsan_core.synthetic.lesions`; None draws
    one of the two at random); `pattern` forces every lesion to plain GGO or
    consolidation (for tests); `scanner` and `distractors` as in `plan_phantom`. The
    achieved ratio is exact to the voxel (a positive target marks at least one voxel).
    """
    return plan_phantom(shape, spacing, rng, diagnosis=diagnosis, target_ratio=target_ratio,
                        pattern=pattern, noise_hu=noise_hu, scanner=scanner,
                        distractors=distractors).render()


def _finish(hu: NDArray[np.float32], rng: np.random.Generator, noise_hu: float
            ) -> NDArray[np.int16]:
    if noise_hu > 0:
        hu = hu + rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)


def ellipsoid_phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    lung_radii_mm: tuple[float, float, float] = (40.0, 60.0, 50.0),
    infection_radius_mm: float = 10.0,
    gap_mm: float = 10.0,
    body_hu: float = 40.0,
    lung_hu: float = LUNG_HU,
    infection_hu: float = -500.0,
    rng: np.random.Generator | None = None,
    noise_hu: float = 0.0,
) -> Phantom:
    """Two ellipsoid lungs and one spherical infection, for exact volume checks.

    The lungs have radii `lung_radii_mm` (x, y, z), centres at x = +-(rx + gap/2)
    and y = z = 0 (the volume centre); the infection is a ball of
    `infection_radius_mm` at the right lung's (x < 0) centre. The whole volume outside
    the lungs is `body_hu`. Analytic volumes: lung 2 * 4/3 pi rx ry rz, infection
    4/3 pi r^3 (must fit inside the lung). `noise_hu` > 0 needs `rng`.
    """
    check_geometry(shape, spacing)
    rx, ry, rz = lung_radii_mm
    r = infection_radius_mm
    if min(lung_radii_mm) <= 0 or r < 0 or r > min(lung_radii_mm):
        raise ConfigError(
            f"need 0 <= infection radius <= smallest lung radius, got {r} and {lung_radii_mm}"
        )
    z, y, x = voxel_axes(shape, spacing)
    half = (x[-1] + spacing[0] / 2, y[-1] + spacing[1] / 2, z[-1] + spacing[2] / 2)
    if 2 * rx + gap_mm / 2 > half[0] or ry > half[1] or rz > half[2]:
        raise ConfigError(
            f"lungs of radii {lung_radii_mm} mm do not fit a field of view of "
            f"{tuple(2 * h for h in half)} mm (x, y, z)"
        )
    if noise_hu > 0 and rng is None:
        raise ConfigError("ellipsoid_phantom: noise_hu > 0 needs an rng")
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    cx = rx + gap_mm / 2
    lung = np.zeros(shape, dtype=bool)
    for s in (-1.0, 1.0):
        lung |= ((xx - s * cx) / rx) ** 2 + (yy / ry) ** 2 + (zz / rz) ** 2 <= 1.0
    infection = ((xx + cx) ** 2 + yy**2 + zz**2 <= r * r) & lung
    hu = np.full(shape, body_hu, dtype=np.float32)
    hu[lung] = lung_hu
    hu[infection] = infection_hu
    noise_rng = rng if rng is not None else np.random.default_rng(0)
    return Phantom(
        hu=_finish(hu, noise_rng, noise_hu),
        lung=lung.astype(np.uint8),
        infection=infection.astype(np.uint8),
        spacing=spacing,
    )
