"""Phantoms, lesions, distractors and scanners (dsan_core.synthetic.phantom, lesions,
infection, distractors, scanner, sites)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsan_core.errors import ConfigError
from dsan_core.synthetic import ellipsoid_phantom, make_phantom, plan_phantom
from dsan_core.synthetic.anatomy import ChestLayout, draw_layout, lung_field, render_slab
from dsan_core.synthetic.distractors import (
    Distractors,
    Granuloma,
    Scar,
    draw_distractors,
    paint_distractors,
)
from dsan_core.synthetic.lesions import (
    CONSOLIDATION_HU,
    GGO_HU,
    Lesion,
    appearance,
    maturity,
    plan_lesions,
)
from dsan_core.synthetic.phantom import SLAB
from dsan_core.synthetic.scanner import Scanner, apply_kernel
from dsan_core.synthetic.sites import LATER_SCANNER, site_profiles

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


def _layouts(n: int) -> list[ChestLayout]:
    return [draw_layout(SHAPE, SPACING, np.random.default_rng([11, i])) for i in range(n)]


Plans = list[tuple[ChestLayout, tuple[Lesion, ...]]]


def _plans(diagnosis: str, ratio: float, n: int = 60) -> Plans:
    return [(layout, plan_lesions(layout, np.random.default_rng([i, 5]), diagnosis,  # type: ignore[arg-type]
                                  ratio)) for i, layout in enumerate(_layouts(n))]


@pytest.mark.parametrize("ratio", [0.0004, 0.01, 0.1])
def test_one_lesion_look_for_both_classes_given_size(ratio: float) -> None:
    """Core HU, halo HU and consolidation share: one distribution for COVID and CAP."""
    looks = {}
    for diagnosis in ("COVID", "CAP"):
        lesions = [lesion for _, plan in _plans(diagnosis, ratio, 150) for lesion in plan]
        looks[diagnosis] = (np.array([lesion.core_hu for lesion in lesions]),
                            np.array([lesion.halo_hu for lesion in lesions]))
    (covid_core, covid_halo), (cap_core, cap_halo) = looks["COVID"], looks["CAP"]
    for q in (10, 50, 90):
        assert abs(np.percentile(covid_core, q) - np.percentile(cap_core, q)) < 60, q
        assert abs(np.percentile(covid_halo, q) - np.percentile(cap_halo, q)) < 30, q
    assert abs((covid_core > -300).mean() - (cap_core > -300).mean()) < 0.08


def test_lesions_get_denser_with_extent_never_the_reverse() -> None:
    rng = np.random.default_rng(0)
    cores = {m: np.array([appearance(rng, m).core_hu for _ in range(2000)]) for m in (0, 0.5, 1)}
    assert np.median(cores[0]) < np.median(cores[0.5]) < np.median(cores[1])
    assert (cores[0] > -300).mean() < 0.1 < 0.5 < (cores[1] > -300).mean()
    medians = {}
    for ratio in (0.0008, 0.12):
        phantoms = [make_phantom(SHAPE, SPACING, np.random.default_rng(s), diagnosis=d,  # type: ignore[arg-type]
                                 target_ratio=ratio) for s in range(3) for d in ("COVID", "CAP")]
        medians[ratio] = np.median(np.concatenate([p.hu[p.infection > 0] for p in phantoms]))
    assert medians[0.0008] + 100 < medians[0.12]


def _rim_and_sides(layout: ChestLayout, lesions: tuple[Lesion, ...]) -> tuple[float, bool]:
    z, y, x = (np.array([lesion.centre[i] for lesion in lesions], dtype=np.float32)
               for i in range(3))
    _, rim = lung_field(layout, z, y, x)
    return float((rim >= 0.85).mean()), len({lesion.side for lesion in lesions}) == 2


@pytest.mark.parametrize("ratio", [0.0003, 0.01, 0.1])
def test_covid_hugs_the_pleura_of_both_lungs_and_cap_is_central_at_every_size(ratio: float
                                                                              ) -> None:
    stats = {}
    for diagnosis in ("COVID", "CAP"):
        rows = [_rim_and_sides(layout, plan) for layout, plan in _plans(diagnosis, ratio)]
        stats[diagnosis] = (np.mean([r[0] for r in rows]), np.mean([r[1] for r in rows]))
    (covid_pleural, covid_bilateral), (cap_pleural, cap_bilateral) = stats["COVID"], stats["CAP"]
    assert covid_pleural > 0.75 and cap_pleural < 0.2, stats
    assert covid_bilateral > 0.65 and cap_bilateral < 0.3, stats


def test_a_lesion_stays_in_its_lung() -> None:
    phantom = make_phantom(SHAPE, SPACING, np.random.default_rng(7), diagnosis="CAP",
                           target_ratio=0.2, pattern="consolidation")
    plan = plan_phantom(SHAPE, SPACING, np.random.default_rng(7), diagnosis="CAP",
                        target_ratio=0.2, pattern="consolidation")
    sides = {lesion.side for lesion in plan.lesions}
    if len(sides) == 1:  # a unilateral plan marks one lung only
        x = np.nonzero(phantom.infection)[2]
        assert len({bool(xi < SHAPE[2] / 2) for xi in x}) == 1


# --- distractors ----------------------------------------------------------------------


def test_distractors_stay_in_the_lung_and_out_of_the_infection() -> None:
    layout = draw_layout(SHAPE, SPACING, np.random.default_rng(3))
    anatomy = render_slab(layout, 0, SLAB)
    infection = anatomy.lung & (anatomy.x_mm[None, None, :] < 0)  # the whole right lung
    everywhere = Distractors(
        dependent_hu=0.0, atelectasis_mm=(200.0, 200.0), atelectasis_top=1.0,
        atelectasis_hu=0.0,
        scars=(Scar((float(anatomy.z_mm[8]), 0.0, 0.0), (0.0, 1.0, 0.0), 400.0, 5.0, -100.0),),
        granulomas=(Granuloma((float(anatomy.z_mm[4]), 0.0, 60.0), 15.0, 500.0),))
    hu = anatomy.hu.copy()
    texture = np.zeros_like(hu)
    paint_distractors(layout, anatomy, hu, everywhere, infection, texture)
    changed = hu != anatomy.hu
    assert changed.any()
    assert not (changed & ~anatomy.lung).any() and not (changed & infection).any()


def test_distractors_leave_the_masks_alone_and_vary_between_scans() -> None:
    kw = {"diagnosis": "COVID", "target_ratio": 0.03, "noise_hu": 0.0}
    clean = make_phantom(SHAPE, SPACING, np.random.default_rng(4), distractors=False, **kw)  # type: ignore[arg-type]
    busy = make_phantom(SHAPE, SPACING, np.random.default_rng(4), **kw)  # type: ignore[arg-type]
    assert np.array_equal(clean.infection, busy.infection)
    assert np.array_equal(clean.lung, busy.lung)
    assert np.array_equal(clean.hu[clean.lung == 0], busy.hu[busy.lung == 0])
    assert (busy.hu[busy.lung > 0] > clean.hu[clean.lung > 0]).any()
    drawn = [draw_distractors(_layouts(1)[0], np.random.default_rng(s)) for s in range(200)]
    dependent = np.array([d.dependent_hu for d in drawn])
    assert dependent.min() < 20 and dependent.max() > 140
    assert 0.5 < np.mean([max(d.atelectasis_mm) > 0 for d in drawn]) < 0.8


# --- scanner effects --------------------------------------------------------------------


def test_the_kernel_works_slice_by_slice() -> None:
    slab = np.random.default_rng(0).normal(size=(3, 20, 20))
    for sharpness in (-0.8, 1.2):
        whole = apply_kernel(slab, sharpness, 1.0)
        by_slice = np.stack([apply_kernel(plane, sharpness, 1.0) for plane in slab])
        np.testing.assert_allclose(whole, by_slice)


def _scanned(scanner: Scanner) -> np.ndarray:
    return make_phantom(SHAPE, SPACING, np.random.default_rng(6), diagnosis="CAP",
                        target_ratio=0.02, scanner=scanner).hu.astype(np.float64)


def test_a_sites_noise_kernel_and_offset_show_in_its_phantoms() -> None:
    clean = _scanned(Scanner(noise_hu=0.0))
    tissue = (clean > -300) & (clean < 300)  # no clipping at HU_MIN there
    for sharpness in (0.0, 1.2, -0.6):
        noisy = _scanned(Scanner(noise_hu=20.0, sharpness=sharpness))
        noise_free = _scanned(Scanner(noise_hu=0.0, sharpness=sharpness))
        assert np.std((noisy - noise_free)[tissue]) == pytest.approx(20.0, rel=0.08), sharpness
    offset = _scanned(Scanner(noise_hu=0.0, offset_hu=25.0)) - clean
    assert np.median(offset[tissue]) == 25.0

    def edges(hu: np.ndarray) -> float:
        return float(np.abs(np.diff(hu, axis=2)).mean())

    sharp, smooth = _scanned(Scanner(0.0, sharpness=1.2)), _scanned(Scanner(0.0, sharpness=-0.6))
    assert edges(smooth) < 0.9 * edges(clean) and edges(sharp) > 1.1 * edges(clean)


def test_sites_differ_in_pixels_and_the_later_site_from_all_tv_sites() -> None:
    tv = site_profiles(("a", "b", "c", "d", "e"), "later")
    scanners = [site.scanner for site in tv[:-1]]
    assert len(set(scanners)) == 5
    assert tv[-1].scanner == LATER_SCANNER and LATER_SCANNER not in scanners
    for s in scanners:
        assert abs(s.offset_hu) <= 30 and abs(LATER_SCANNER.offset_hu) <= 30


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
