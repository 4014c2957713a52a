"""A procedural chest: body, fat, lungs, heart, vessels, airways, spine, ribs, table.

Conventions: arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order);
values are HU. Patient axes follow DICOM LPS: +x is the patient's left, +y is
posterior (down in the image), +z is superior, so slice 0 is the lowest (diaphragm)
and the last slice the highest (lung apex).

The anatomy is laid out in fractions of the field of view, so it fits any matrix or
spacing; only vessel and wall thicknesses are kept at least about one voxel wide.
Every random choice is made once, in `draw_layout`; `render_slab` then paints any
run of slices from the layout alone, so a 600-slice 512x512 chest is built a slab at
a time and a slab never depends on which other slabs were rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsan_core.errors import ConfigError

FloatArray = NDArray[np.float32]
BoolArray = NDArray[np.bool_]
Segment = tuple[tuple[float, float, float], tuple[float, float, float], float]

AIR_HU = -1000.0
FAT_HU = -100.0
SOFT_TISSUE_HU = 40.0
BLOOD_HU = 40.0
LUNG_HU = -850.0
BONE_HU = 700.0
CANCELLOUS_HU = 250.0
TABLE_HU = 200.0


@dataclass(frozen=True)
class LungShape:
    """One lung's ellipse in the axial plane (mm) and its diaphragm dome height (0..1 of z)."""

    code: int  # 1 right lung (x < 0), 2 left lung
    cx: float
    cy: float
    ax: float
    ay: float
    dome_top: float


@dataclass(frozen=True)
class ChestLayout:
    """Everything random about one chest; `render_slab` and `lung_field` are pure in it."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    body: tuple[float, float, float]  # semi-axes x, y and centre y of the body ellipse (mm)
    rib_pitch: float
    lungs: tuple[LungShape, LungShape]
    vessels: tuple[Segment, ...]  # (start, end, radius), (z, y, x) mm
    airways: tuple[Segment, ...]
    airway_wall: float

    @property
    def z_extent(self) -> float:
        return self.shape[0] * self.spacing[2]


@dataclass(frozen=True)
class Anatomy:
    """A noise-free run of slices before lesions.

    `hu` float32 (z, y, x); `lung` bool; `side` int8 (0 outside the lungs, 1 right
    lung, 2 left lung); `rim` float32: 0 at a lung's core, about 1 at its pleura
    (0 outside the lungs); `z_mm`, `y_mm`, `x_mm` the voxel-centre axes in mm;
    `z0` the index of the first slice in the whole volume.
    """

    hu: FloatArray
    lung: BoolArray
    side: NDArray[np.int8]
    rim: FloatArray
    z_mm: FloatArray
    y_mm: FloatArray
    x_mm: FloatArray
    z0: int = 0


@dataclass(frozen=True)
class LungSlab:
    """The lungs of a run of slices, without the rest of the chest (what placing and
    sizing lesions needs): `lung`, `side`, `rim` and the axes as in `Anatomy`, plus the
    airways' lumen (`airway`) and wall (`wall`, which holds the lumen), cut out of
    `lung`."""

    lung: BoolArray
    side: NDArray[np.int8]
    rim: FloatArray
    airway: BoolArray
    wall: BoolArray
    z_mm: FloatArray
    y_mm: FloatArray
    x_mm: FloatArray
    z0: int = 0


def voxel_axes(
    shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Voxel-centre coordinates in mm along z, y, x, centred on the volume."""
    nz, ny, nx = shape
    sx, sy, sz = spacing
    z = ((np.arange(nz) - (nz - 1) / 2) * sz).astype(np.float32)
    y = ((np.arange(ny) - (ny - 1) / 2) * sy).astype(np.float32)
    x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)
    return z, y, x


def check_geometry(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
    """Raise ConfigError unless the shape and spacing can hold a phantom."""
    if len(shape) != 3 or min(shape) < 8:
        raise ConfigError(f"phantom shape (z, y, x) must be >= 8 per axis, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ConfigError(f"phantom spacing (x, y, z) mm must be positive, got {spacing}")


def _ellipse(x: FloatArray, y: FloatArray, cx: float, cy: float, ax: float, ay: float
             ) -> FloatArray:
    """Normalised elliptic radius: < 1 inside the ellipse."""
    return np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2).astype(np.float32)


def _segment_distance(
    points: tuple[FloatArray, FloatArray, FloatArray],
    start: NDArray[np.float64],
    end: NDArray[np.float64],
) -> FloatArray:
    """Distance (mm) of broadcastable (z, y, x) point grids to a segment."""
    zz, yy, xx = points
    d = end - start
    length2 = float(d @ d) or 1e-9
    t = ((zz - start[0]) * d[0] + (yy - start[1]) * d[1] + (xx - start[2]) * d[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    dz = zz - (start[0] + t * d[0])
    dy = yy - (start[1] + t * d[1])
    dx = xx - (start[2] + t * d[2])
    return np.sqrt(dz * dz + dy * dy + dx * dx).astype(np.float32)


def paint_tube(
    target: BoolArray,
    axes: tuple[FloatArray, FloatArray, FloatArray],
    start: NDArray[np.float64],
    end: NDArray[np.float64],
    radius: float,
) -> None:
    """Set `target` True inside a capsule of `radius` mm around start-end (z, y, x mm)."""
    lo = np.minimum(start, end) - radius
    hi = np.maximum(start, end) + radius
    sl = []
    for axis_mm, a, b in zip(axes, lo, hi, strict=True):
        i0 = int(np.searchsorted(axis_mm, a, side="left"))
        i1 = int(np.searchsorted(axis_mm, b, side="right"))
        if i1 <= i0:
            return
        sl.append(slice(i0, i1))
    zs, ys, xs = (ax[s] for ax, s in zip(axes, sl, strict=True))
    dist = _segment_distance((zs[:, None, None], ys[None, :, None], xs[None, None, :]), start, end)
    target[sl[0], sl[1], sl[2]] |= dist <= radius


def _vessel_tree(rng: np.random.Generator, hilum: NDArray[np.float64],
                 lung_extent: NDArray[np.float64], trunk_radius: float, min_radius: float
                 ) -> list[Segment]:
    """Branching segments (start, end, radius) in mm, thinner towards the periphery."""
    segments: list[Segment] = []
    # Trunk directions in lung units (z, y, x): up, down, lateral, anterior, posterior.
    trunks = np.array(
        [[1.0, 0.0, 0.3], [-1.0, 0.3, 0.4], [0.0, 0.0, 1.0], [0.2, -1.0, 0.5], [-0.3, 1.0, 0.5]]
    )
    stack = [(hilum, d / np.linalg.norm(d), 0.45, trunk_radius, 0) for d in trunks]
    while stack:
        start, direction, length, radius, depth = stack.pop()
        end = start + direction * length * lung_extent
        segments.append((_point(start), _point(end), max(radius, min_radius)))
        if depth >= 4:
            continue
        for _ in range(2):
            child = direction + rng.normal(0.0, 0.45, size=3)
            child /= np.linalg.norm(child) or 1.0
            stack.append((end, child, length * 0.6, radius * 0.7, depth + 1))
    return segments


def _point(p: NDArray[np.float64]) -> tuple[float, float, float]:
    return float(p[0]), float(p[1]), float(p[2])


def draw_layout(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                rng: np.random.Generator) -> ChestLayout:
    """Draw one chest for a volume of `shape` (z, y, x) at `spacing` (x, y, z) mm."""
    check_geometry(shape, spacing)
    nz, ny, nx = shape
    sx, sy, sz = spacing
    hx, hy = nx * sx / 2.0, ny * sy / 2.0
    z_lo, z_extent = -(nz - 1) / 2 * sz, (nz - 1) * sz
    vox = min(sx, sy, sz)
    jitter = 1.0 + 0.04 * rng.uniform(-1, 1, size=4)
    bax, bay, bcy = 0.80 * hx * jitter[0], 0.56 * hy * jitter[1], -0.10 * hy
    lungs = []
    for code, s in ((1, -1.0), (2, 1.0)):
        lungs.append(LungShape(code=code, cx=s * 0.45 * bax, cy=bcy + 0.04 * bay,
                               ax=0.33 * bax * (0.93 if s > 0 else 1.0), ay=0.78 * bay,
                               dome_top=0.34 if s < 0 else 0.30))  # the liver lifts the right
    vessels: list[Segment] = []
    for lung in lungs:
        hilum = np.array([z_lo + 0.55 * z_extent, lung.cy - 0.1 * lung.ay,
                          lung.cx - np.sign(lung.cx) * 0.55 * lung.ax])
        extent = np.array([0.6 * z_extent, lung.ay, np.sign(lung.cx) * lung.ax])
        vessels += _vessel_tree(rng, hilum, extent, 0.03 * bax, 0.55 * min(sx, sy))
    ty = bcy + 0.12 * bay
    carina = (z_lo + 0.62 * z_extent, ty, 0.0)
    top = (z_lo + z_extent + 2 * sz, ty, 0.0)
    airways: list[Segment] = [(top, carina, max(0.06 * bax, 0.8 * vox))]
    for lung in lungs:
        hilum_airway = (z_lo + 0.52 * z_extent, ty + 0.05 * bay, 0.62 * lung.cx)
        airways.append((carina, hilum_airway, max(0.04 * bax, 0.7 * vox)))
    return ChestLayout(shape=shape, spacing=spacing, body=(bax, bay, bcy),
                       rib_pitch=30.0 * float(jitter[2]), lungs=(lungs[0], lungs[1]),
                       vessels=tuple(vessels), airways=tuple(airways),
                       airway_wall=max(0.015 * bax, 0.5 * vox))


def relative_height(layout: ChestLayout, z: FloatArray) -> FloatArray:
    """0 at the bottom of the volume (diaphragm side), 1 at its top (apex)."""
    return (z / layout.z_extent + 0.5).astype(np.float32)


def lung_field(layout: ChestLayout, z: FloatArray, y: FloatArray, x: FloatArray
               ) -> tuple[NDArray[np.int8], FloatArray]:
    """Side (0 none, 1 right, 2 left) and rim (0 core .. 1 pleura) at broadcastable points.

    The lungs before airways are cut out: what lesion placement and rendering share.
    """
    bax, bay, bcy = layout.body
    t = relative_height(layout, z)
    body_r = _ellipse(x, y, 0.0, bcy, bax, bay)
    heart_size = np.sqrt(np.clip(1.0 - ((t - 0.36) / 0.30) ** 2, 0.0, 1.0))
    heart = _ellipse(x, y, 0.12 * bax, bcy - 0.18 * bay, 0.32 * bax, 0.48 * bay) < heart_size
    mediastinum = (np.abs(x) < 0.13 * bax) & (body_r < 0.9)
    vr, vcy = 0.19 * bay, bcy + 0.60 * bay
    spine = _ellipse(x, y, 0.0, vcy + 0.8 * vr, 1.6 * vr, 2.3 * vr) < 1.0
    allowed = (body_r < 0.85) & ~heart & ~mediastinum & ~spine
    taper = np.sqrt(np.clip((0.985 - t) / 0.22, 0.0, 1.0))  # rounded apex
    shape = np.broadcast_shapes(np.shape(z), np.shape(y), np.shape(x))
    side = np.zeros(shape, dtype=np.int8)
    rim = np.zeros(shape, dtype=np.float32)
    for lung in layout.lungs:
        rho = _ellipse(x, y, lung.cx, lung.cy, lung.ax, lung.ay)
        inside = (rho < taper) & (t > lung.dome_top - 0.31 * rho**2) & allowed
        inside = np.broadcast_to(inside, shape)
        side[inside] = lung.code
        rim[inside] = np.broadcast_to(rho / np.maximum(taper, 1e-3), shape)[inside]
    return side, rim


def lung_slab(layout: ChestLayout, z0: int, z1: int) -> LungSlab:
    """The lungs of slices z0..z1-1 (see `LungSlab`): the lung field less the airway
    walls. `render_slab` paints the chest around them."""
    z_all, y, x = voxel_axes(layout.shape, layout.spacing)
    z = z_all[z0:z1]
    shape = (len(z), layout.shape[1], layout.shape[2])
    side, rim = lung_field(layout, z[:, None, None], y[None, :, None], x[None, None, :])
    # Trachea and main bronchi: air lumen with a soft-tissue wall, not part of the lungs.
    axes = (z, y, x)
    airway = np.zeros(shape, dtype=bool)
    wall = np.zeros(shape, dtype=bool)
    for start, end, radius in layout.airways:
        paint_tube(wall, axes, np.array(start), np.array(end), radius + layout.airway_wall)
        paint_tube(airway, axes, np.array(start), np.array(end), radius)
    lung = (side > 0) & ~wall
    side[~lung] = 0
    rim[~lung] = 0.0
    return LungSlab(lung=lung, side=side, rim=rim, airway=airway, wall=wall, z_mm=z,
                    y_mm=y, x_mm=x, z0=z0)


def render_slab(layout: ChestLayout, z0: int, z1: int) -> Anatomy:
    """Slices z0..z1-1 of the chest (see `Anatomy`)."""
    lungs = lung_slab(layout, z0, z1)
    z, y, x = lungs.z_mm, lungs.y_mm, lungs.x_mm
    shape = lungs.lung.shape
    sx, sy, sz = layout.spacing
    bax, bay, bcy = layout.body
    t = relative_height(layout, z)[:, None, None]
    x2, y2 = x[None, :], y[:, None]
    body_r = _ellipse(x2, y2, 0.0, bcy, bax, bay)[None]
    hu = np.full(shape, AIR_HU, dtype=np.float32)

    hy = layout.shape[1] * sy / 2.0
    hx = layout.shape[2] * sx / 2.0
    # Scanner table: a plate under the body, curving up at its edges.
    y_top = bcy + bay + 0.06 * hy - 0.08 * hy * (x2 / (0.7 * hx)) ** 2
    plate = (y2 >= y_top) & (y2 <= y_top + max(6.0, 1.2 * sy)) & (np.abs(x2) < 0.7 * hx)
    hu[:, plate] = TABLE_HU
    hu[np.broadcast_to(body_r < 1.0, shape)] = FAT_HU
    hu[np.broadcast_to(body_r < 0.92, shape)] = SOFT_TISSUE_HU

    # Ribs: oblique bony bands in the chest wall, higher at the back than at the front.
    posterior = np.clip(((y2 - bcy) / bay + 1.0) / 2.0, 0.0, 1.0)  # 0 front .. 1 back
    z_abs = (z - voxel_axes(layout.shape, layout.spacing)[0][0])[:, None, None]
    phase = np.mod(z_abs + 40.0 * (1.0 - posterior[None]), layout.rib_pitch)
    front = (np.abs(x2) < 0.2 * bax) & (y2 < bcy)
    ring = (body_r > 0.85) & (body_r < 0.91) & ~front[None]
    hu[ring & (phase < max(9.0, 1.2 * sz)) & (t > 0.12)] = BONE_HU
    sternum = _ellipse(x2, y2, 0.0, bcy - 0.88 * bay, 0.10 * bax, max(0.05 * bay, sy)) < 1
    hu[np.broadcast_to(sternum[None], shape) & (t > 0.3)] = BONE_HU * 0.6

    # Spine: vertebral body with discs, canal with cord, posterior arch.
    vr, vcy = 0.19 * bay, bcy + 0.60 * bay
    vert_r = _ellipse(x2, y2, 0.0, vcy, vr * 1.1, vr)
    canal_r = _ellipse(x2, y2, 0.0, vcy + 1.55 * vr, 0.5 * vr, 0.45 * vr)
    disc = np.mod(z_abs, 30.0) < max(5.0, sz)
    vertebra = np.broadcast_to((vert_r < 1.0)[None], shape)
    hu[vertebra] = CANCELLOUS_HU
    hu[np.broadcast_to(((vert_r < 1.0) & (vert_r > 0.75))[None], shape)] = BONE_HU
    hu[vertebra & np.broadcast_to(disc, shape)] = 80.0
    arch = (canal_r < 1.8) & (canal_r >= 1.0) & (y2 > vcy + vr)
    hu[np.broadcast_to(arch[None], shape)] = BONE_HU
    hu[np.broadcast_to((canal_r < 1.0)[None], shape)] = 15.0

    heart_size = np.sqrt(np.clip(1.0 - ((t - 0.36) / 0.30) ** 2, 0.0, 1.0))
    heart_r = _ellipse(x2, y2, 0.12 * bax, bcy - 0.18 * bay, 0.32 * bax, 0.48 * bay)[None]
    heart = heart_r < heart_size
    hu[heart & (heart_r < heart_size * 0.8)] = BLOOD_HU
    hu[heart & (heart_r >= heart_size * 0.8)] = FAT_HU * 0.6

    lung = lungs.lung
    # Parenchyma is a little denser posteriorly (gravity-dependent).
    gradient = LUNG_HU + 50.0 * np.clip((y2 - bcy) / bay + 0.5, 0.0, 1.0)
    hu[lung] = np.broadcast_to(gradient[None], shape)[lung]

    axes = (z, y, x)
    vessels = np.zeros(shape, dtype=bool)
    for start, end, radius in layout.vessels:
        paint_tube(vessels, axes, np.array(start), np.array(end), radius)
    vessels &= lung
    hu[vessels] = BLOOD_HU

    hu[lungs.wall & ~lungs.airway] = SOFT_TISSUE_HU * 0.5
    hu[lungs.airway] = AIR_HU
    return Anatomy(hu=hu, lung=lung, side=lungs.side, rim=lungs.rim, z_mm=z, y_mm=y, x_mm=x,
                   z0=z0)
