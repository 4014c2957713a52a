"""A procedural chest: body, fat, lungs, heart, vessels, airways, spine, ribs, table.

Conventions: arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order);
values are HU. Patient axes follow DICOM LPS: +x is the patient's left, +y is
posterior (down in the image), +z is superior, so slice 0 is the lowest (diaphragm)
and the last slice the highest (lung apex).

The anatomy is laid out in fractions of the field of view, so it fits any matrix or
spacing; only vessel and wall thicknesses are kept at least about one voxel wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsan_core.errors import ConfigError

FloatArray = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

AIR_HU = -1000.0
FAT_HU = -100.0
SOFT_TISSUE_HU = 40.0
BLOOD_HU = 40.0
LUNG_HU = -850.0
BONE_HU = 700.0
CANCELLOUS_HU = 250.0
TABLE_HU = 200.0


@dataclass(frozen=True)
class Anatomy:
    """A noise-free chest before lesions.

    `hu` float32 (z, y, x); `lung` bool; `side` int8 (0 outside the lungs, 1 right
    lung, 2 left lung); `rim` float32: 0 at a lung's core, about 1 at its pleura
    (0 outside the lungs); `coords_mm` the (z, y, x) voxel-centre axes in mm.
    """

    hu: FloatArray
    lung: BoolArray
    side: NDArray[np.int8]
    rim: FloatArray
    z_mm: FloatArray
    y_mm: FloatArray
    x_mm: FloatArray


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


def _ellipse(
    x: FloatArray, y: FloatArray, cx: float, cy: float, ax: float, ay: float
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
    z, y, x = axes
    lo = np.minimum(start, end) - radius
    hi = np.maximum(start, end) + radius
    sl = []
    for axis_mm, a, b in zip((z, y, x), lo, hi, strict=True):
        i0 = int(np.searchsorted(axis_mm, a, side="left"))
        i1 = int(np.searchsorted(axis_mm, b, side="right"))
        if i1 <= i0:
            return
        sl.append(slice(i0, i1))
    zs, ys, xs = (ax[s] for ax, s in zip((z, y, x), sl, strict=True))
    dist = _segment_distance((zs[:, None, None], ys[None, :, None], xs[None, None, :]), start, end)
    target[sl[0], sl[1], sl[2]] |= dist <= radius


def _vessel_tree(
    rng: np.random.Generator,
    hilum: NDArray[np.float64],
    lung_extent: NDArray[np.float64],
    trunk_radius: float,
    min_radius: float,
) -> list[tuple[NDArray[np.float64], NDArray[np.float64], float]]:
    """Branching segments (start, end, radius) in mm, thinner towards the periphery."""
    segments: list[tuple[NDArray[np.float64], NDArray[np.float64], float]] = []
    # Trunk directions in lung units (z, y, x): up, down, lateral, anterior, posterior.
    trunks = np.array(
        [[1.0, 0.0, 0.3], [-1.0, 0.3, 0.4], [0.0, 0.0, 1.0], [0.2, -1.0, 0.5], [-0.3, 1.0, 0.5]]
    )
    stack = [(hilum, d / np.linalg.norm(d), 0.45, trunk_radius, 0) for d in trunks]
    while stack:
        start, direction, length, radius, depth = stack.pop()
        end = start + direction * length * lung_extent
        segments.append((start, end, max(radius, min_radius)))
        if depth >= 4:
            continue
        for _ in range(2):
            jitter = rng.normal(0.0, 0.45, size=3)
            child = direction + jitter
            child /= np.linalg.norm(child) or 1.0
            stack.append((end, child, length * 0.6, radius * 0.7, depth + 1))
    return segments


def make_anatomy(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> Anatomy:
    """Build a noise-free chest of `shape` (z, y, x) at `spacing` (x, y, z) mm."""
    check_geometry(shape, spacing)
    nz, ny, nx = shape
    sx, sy, sz = spacing
    z, y, x = voxel_axes(shape, spacing)
    hx, hy = nx * sx / 2.0, ny * sy / 2.0
    t = ((np.arange(nz) + 0.5) / nz).astype(np.float32)[:, None, None]  # 0 base .. 1 apex
    x2, y2 = x[None, :], y[:, None]
    vox = min(sx, sy, sz)
    jitter = 1.0 + 0.04 * rng.uniform(-1, 1, size=4)

    bax, bay, bcy = 0.80 * hx * jitter[0], 0.56 * hy * jitter[1], -0.10 * hy
    body_r = _ellipse(x2, y2, 0.0, bcy, bax, bay)[None]
    body = body_r < 1.0
    hu = np.full(shape, AIR_HU, dtype=np.float32)

    # Scanner table: a plate under the body, curving up at its edges.
    y_top = bcy + bay + 0.06 * hy - 0.08 * hy * (x2 / (0.7 * hx)) ** 2
    plate = (y2 >= y_top) & (y2 <= y_top + max(6.0, 1.2 * sy)) & (np.abs(x2) < 0.7 * hx)
    hu[:, plate] = TABLE_HU

    hu[np.broadcast_to(body, shape)] = FAT_HU
    muscle = body_r < 0.92
    hu[np.broadcast_to(muscle, shape)] = SOFT_TISSUE_HU

    # Ribs: oblique bony bands in the chest wall, higher at the back than at the front.
    posterior = np.clip(((y2 - bcy) / bay + 1.0) / 2.0, 0.0, 1.0)  # 0 front .. 1 back
    z_abs = z[:, None, None] - z[0]
    pitch, width = 30.0 * jitter[2], max(9.0, 1.2 * sz)
    phase = np.mod(z_abs + 40.0 * (1.0 - posterior[None]), pitch)
    ring = (body_r > 0.85) & (body_r < 0.91) & ~((np.abs(x2) < 0.2 * bax) & (y2 < bcy))[None]
    ribs = ring & (phase < width) & (t > 0.12)
    hu[ribs] = BONE_HU
    sternum = _ellipse(x2, y2, 0.0, bcy - 0.88 * bay, 0.10 * bax, max(0.05 * bay, sy))[None] < 1
    hu[np.broadcast_to(sternum, shape) & (t > 0.3)] = BONE_HU * 0.6

    # Spine: vertebral body with discs, canal with cord, posterior arch.
    vr = 0.19 * bay
    vcy = bcy + 0.60 * bay
    vert_r = _ellipse(x2, y2, 0.0, vcy, vr * 1.1, vr)
    canal_r = _ellipse(x2, y2, 0.0, vcy + 1.55 * vr, 0.5 * vr, 0.45 * vr)
    disc = (np.mod(z_abs, 30.0) < max(5.0, sz))
    hu[np.broadcast_to((vert_r < 1.0)[None], shape)] = CANCELLOUS_HU
    cortex = (vert_r < 1.0) & (vert_r > 0.75)
    hu[np.broadcast_to(cortex[None], shape)] = BONE_HU
    hu[np.broadcast_to((vert_r < 1.0)[None], shape) & np.broadcast_to(disc, shape)] = 80.0
    arch = (canal_r < 1.8) & (canal_r >= 1.0) & (y2 > vcy + vr)
    hu[np.broadcast_to(arch[None], shape)] = BONE_HU
    hu[np.broadcast_to((canal_r < 1.0)[None], shape)] = 15.0
    spine_zone = (_ellipse(x2, y2, 0.0, vcy + 0.8 * vr, 1.6 * vr, 2.3 * vr) < 1.0)[None]

    # Heart and mediastinum between the lungs.
    heart_size = np.sqrt(np.clip(1.0 - ((t - 0.36) / 0.30) ** 2, 0.0, 1.0))
    heart_r = _ellipse(x2, y2, 0.12 * bax, bcy - 0.18 * bay, 0.32 * bax, 0.48 * bay)[None]
    heart = heart_r < heart_size
    hu[heart & (heart_r < heart_size * 0.8)] = BLOOD_HU
    hu[heart & (heart_r >= heart_size * 0.8)] = FAT_HU * 0.6
    mediastinum = (np.abs(x2) < 0.13 * bax)[None] & (body_r < 0.9)

    lung = np.zeros(shape, dtype=bool)
    side = np.zeros(shape, dtype=np.int8)
    rim = np.zeros(shape, dtype=np.float32)
    taper = np.sqrt(np.clip((0.985 - t) / 0.22, 0.0, 1.0))  # rounded apex
    inner = body_r < 0.85
    centres: list[tuple[float, float, float, float]] = []
    for code, s in ((1, -1.0), (2, 1.0)):
        cx, cy = s * 0.45 * bax, bcy + 0.04 * bay
        ax = 0.33 * bax * (0.93 if s > 0 else 1.0)
        ay = 0.78 * bay
        rho = _ellipse(x2, y2, cx, cy, ax, ay)[None]
        dome_top = 0.34 if s < 0 else 0.30  # the liver lifts the right dome
        above_dome = t > dome_top - 0.31 * rho**2
        this = (rho < taper) & above_dome & inner & ~heart & ~mediastinum & ~spine_zone
        lung |= this
        side[this] = code
        rim[this] = np.broadcast_to(rho / np.maximum(taper, 1e-3), shape)[this]
        centres.append((cx, cy, ax, ay))

    # Parenchyma is a little denser posteriorly (gravity-dependent).
    gradient = LUNG_HU + 50.0 * np.clip((y2 - bcy) / bay + 0.5, 0.0, 1.0)
    hu[lung] = np.broadcast_to(gradient[None], shape)[lung]

    axes = (z, y, x)
    z_extent = float(z[-1] - z[0])
    vessels = np.zeros(shape, dtype=bool)
    for cx, cy, ax, ay in centres:
        hilum = np.array([z[0] + 0.55 * z_extent, cy - 0.1 * ay, cx - np.sign(cx) * 0.55 * ax])
        extent = np.array([0.6 * z_extent, ay, np.sign(cx) * ax])
        for start, end, radius in _vessel_tree(rng, hilum, extent, 0.03 * bax, 0.55 * min(sx, sy)):
            paint_tube(vessels, axes, start, end, radius)
    vessels &= lung
    hu[vessels] = BLOOD_HU

    # Trachea and main bronchi: air lumen with a soft-tissue wall, not part of the lungs.
    airway = np.zeros(shape, dtype=bool)
    wall = np.zeros(shape, dtype=bool)
    ty = bcy + 0.12 * bay
    carina = np.array([z[0] + 0.62 * z_extent, ty, 0.0])
    top = np.array([z[-1] + 2 * sz, ty, 0.0])
    r_trachea = max(0.06 * bax, 0.8 * vox)
    r_wall = max(0.015 * bax, 0.5 * vox)
    tubes = [(top, carina, r_trachea)]
    for cx, _cy, _ax, _ay in centres:
        hilum = np.array([z[0] + 0.52 * z_extent, ty + 0.05 * bay, 0.62 * cx])
        tubes.append((carina, hilum, max(0.04 * bax, 0.7 * vox)))
    for start, end, radius in tubes:
        paint_tube(wall, axes, start, end, radius + r_wall)
        paint_tube(airway, axes, start, end, radius)
    hu[wall & ~airway] = SOFT_TISSUE_HU * 0.5
    hu[airway] = AIR_HU
    lung &= ~wall
    side[~lung] = 0
    rim[~lung] = 0.0

    if not lung.any():
        raise ConfigError(f"phantom shape {shape} at spacing {spacing} leaves no lung voxels")
    return Anatomy(hu=hu, lung=lung, side=side, rim=rim, z_mm=z, y_mm=y, x_mm=x)
