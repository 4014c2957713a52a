"""Phantoms and lesions (dsan_core.synthetic.phantom, lesions, infection)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsan_core.errors import ConfigError
from dsan_core.synthetic import ellipsoid_phantom, make_phantom, plan_phantom
from dsan_core.synthetic.lesions import CONSOLIDATION_HU, GGO_HU, maturity
from dsan_core.synthetic.phantom import SLAB

SHAPE = (40, 64, 64)
SPACING = (5.625, 5.625, 1.5)


@pytest.mark.parametrize("diagnosis", ["COVID", "CAP"])
@pytest.mark.parametrize("target", [0.0005, 0.004, 0.02, 0.15])
def test_make_phantom_hits_target_ratio(diagnosis: str, target: float) -> None:
    phantom = make_phantom(SHAPE, SPACING, np.random.default_rng(3), diagnosis=diagnosis,  # type: ignore[arg-type]
                           target_ratio=target)
    lung = int(phantom.lung.sum())
    assert abs(phantom.infection_ratio * lung - round(target * lung)) <= 0.5  # to the voxel
    assert phantom.hu.dtype == np.int16 and phantom.hu.shape == SHAPE
    assert phantom.lung.dtype == np.uint8 and phantom.infection.dtype == np.uint8
    assert set(np.unique(phantom.infection)) <= {0, 1}
    assert not np.any(phantom.infection & (1 - phantom.lung)), "infection outside the lung"


def test_slabs_stack_to_the_phantom_and_the_plan_knows_its_ratio() -> None:
    shape = (2 * SLAB + 5, 64, 64)  # a partial last slab
    kw = {"diagnosis": "COVID", "target_ratio": 0.04}
    plan = plan_phantom(shape, SPACING, np.random.default_rng(8), **kw)  # type: ignore[arg-type]
    slabs = list(plan.slabs())
    assert [s.z0 for s in slabs] == [0, SLAB, 2 * SLAB]
    whole = make_phantom(shape, SPACING, np.random.default_rng(8), **kw)  # type: ignore[arg-type]
    assert np.array_equal(np.concatenate([s.hu for s in slabs]), whole.hu)
    assert np.array_equal(np.concatenate([s.infection for s in slabs]), whole.infection)
    assert plan.lung_voxels == whole.lung.sum()
    assert plan.infection_voxels == whole.infection.sum()
    assert plan.infection_ratio == whole.infection_ratio


def test_make_phantom_is_seeded() -> None:
    a = make_phantom(SHAPE, SPACING, np.random.default_rng(5), diagnosis="COVID", target_ratio=0.02)
    b = make_phantom(SHAPE, SPACING, np.random.default_rng(5), diagnosis="COVID", target_ratio=0.02)
    c = make_phantom(SHAPE, SPACING, np.random.default_rng(6), diagnosis="COVID", target_ratio=0.02)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.infection, b.infection)
    assert not np.array_equal(a.hu, c.hu)


def test_zero_ratio_gives_empty_infection() -> None:
    p = make_phantom(SHAPE, SPACING, np.random.default_rng(0), diagnosis="CAP", target_ratio=0.0)
    assert p.infection.sum() == 0 and p.lung.sum() > 1000


def test_phantom_anatomy_hu() -> None:
    p = make_phantom(SHAPE, SPACING, np.random.default_rng(1), diagnosis=None, target_ratio=0.0)
    lung_hu = np.median(p.hu[p.lung > 0])
    assert -900 < lung_hu < -750
    assert np.median(p.hu[0, :4, :4]) == pytest.approx(-1000, abs=20)  # air in the corner
    assert p.hu.max() > 500  # bone
    assert np.count_nonzero((p.hu > -200) & (p.hu < 100)) > 0.2 * p.hu.size  # soft tissue


def test_the_label_changes_nothing_outside_the_lesions() -> None:
    kw = {"target_ratio": 0.05, "noise_hu": 0.0}
    covid = make_phantom(SHAPE, SPACING, np.random.default_rng(9), diagnosis="COVID", **kw)  # type: ignore[arg-type]
    cap = make_phantom(SHAPE, SPACING, np.random.default_rng(9), diagnosis="CAP", **kw)  # type: ignore[arg-type]
    outside = (covid.infection == 0) & (cap.infection == 0)
    assert np.array_equal(covid.hu[outside], cap.hu[outside])
    assert np.array_equal(covid.lung, cap.lung)


@pytest.mark.parametrize(
    "pattern, hu_range", [("ggo", GGO_HU), ("consolidation", CONSOLIDATION_HU)]
)
def test_lesion_hu_ranges(pattern: str, hu_range: tuple[float, float]) -> None:
    p = make_phantom(SHAPE, SPACING, np.random.default_rng(2), diagnosis="COVID",
                     target_ratio=0.08, pattern=pattern)  # type: ignore[arg-type]
    lesion = p.hu[p.infection > 0].astype(float)
    lo, hi = hu_range
    # Soft borders blend with parenchyma, so allow a margin below the core range.
    assert lo - 120 <= np.median(lesion) <= hi
    assert np.percentile(lesion, 90) <= hi + 60


def test_ggo_is_darker_than_consolidation() -> None:
    kw = {"diagnosis": "CAP", "target_ratio": 0.05}
    ggo = make_phantom(SHAPE, SPACING, np.random.default_rng(4), pattern="ggo", **kw)  # type: ignore[arg-type]
    con = make_phantom(SHAPE, SPACING, np.random.default_rng(4), pattern="consolidation", **kw)  # type: ignore[arg-type]
    assert np.median(con.hu[con.infection > 0]) - np.median(ggo.hu[ggo.infection > 0]) > 300


def _bilateral(infection: np.ndarray) -> bool:
    x = np.nonzero(infection)[2]
    return len({bool(xi < infection.shape[2] / 2) for xi in x}) == 2


def _looks(diagnosis: str, ratio: float, n: int = 12) -> tuple[int, list[float]]:
    phantoms = [make_phantom(SHAPE, SPACING, np.random.default_rng(s), diagnosis=diagnosis,  # type: ignore[arg-type]
                             target_ratio=ratio) for s in range(n)]
    return (sum(_bilateral(p.infection) for p in phantoms),
            [float(p.hu[p.infection > 0].mean()) for p in phantoms])


def test_extensive_covid_is_bilateral_and_cap_unilateral_but_lesion_hu_overlaps() -> None:
    covid_bilateral, covid_hu = _looks("COVID", 0.08)
    cap_bilateral, cap_hu = _looks("CAP", 0.08)
    assert covid_bilateral >= 9 and cap_bilateral <= 4
    # No single HU threshold separates the classes: their mean lesion HU ranges overlap,
    # and CAP reaches consolidation while COVID stays mostly ground glass.
    assert min(cap_hu) < max(covid_hu) and max(cap_hu) > -250 > np.median(covid_hu)
    assert np.median(covid_hu) < np.median(cap_hu)


def test_maturity_grows_with_extent() -> None:
    assert maturity(0.0005) == 0.0 and maturity(0.2) == 1.0
    assert 0.0 < maturity(0.005) < maturity(0.02) < 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 1.25)])
def test_ellipsoid_phantom_matches_analytic_volumes(spacing: tuple[float, float, float]) -> None:
    radii, r = (20.0, 30.0, 25.0), 10.0
    shape = (int(70 / spacing[2]), int(80 / spacing[1]), int(110 / spacing[0]))
    p = ellipsoid_phantom(shape, spacing, lung_radii_mm=radii, infection_radius_mm=r)
    sphere_ml = 4 / 3 * math.pi * r**3 / 1000
    lung_ml = 2 * 4 / 3 * math.pi * radii[0] * radii[1] * radii[2] / 1000
    assert p.infection_ml == pytest.approx(sphere_ml, rel=0.03)
    assert p.lung_ml == pytest.approx(lung_ml, rel=0.02)
    assert p.infection_ratio == pytest.approx(sphere_ml / lung_ml, rel=0.04)
    assert not np.any(p.infection & (1 - p.lung))
    assert set(np.unique(p.hu)) == {-850, -500, 40}


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="target_ratio"):
        make_phantom(SHAPE, SPACING, np.random.default_rng(0), diagnosis="CAP", target_ratio=1.5)
    with pytest.raises(ConfigError, match="infection radius"):
        ellipsoid_phantom((40, 80, 110), (1.0, 1.0, 1.0), lung_radii_mm=(20, 30, 15),
                          infection_radius_mm=16)
