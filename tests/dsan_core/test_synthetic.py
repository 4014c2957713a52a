"""Tests of the synthetic chest-CT cohort (dsan_core.synthetic)."""

from __future__ import annotations

import csv
import hashlib
import math
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_rescale

from dsan_core.config import SynthConfig
from dsan_core.errors import ConfigError
from dsan_core.synthetic import (
    GROUND_TRUTH_COLUMNS,
    LABEL_COLUMNS,
    CohortSummary,
    ellipsoid_phantom,
    generate_cohort,
    make_phantom,
    plan_cohort,
    ratio_bin,
    sampling_group,
)
from dsan_core.synthetic.dicom_export import stored_pixels
from dsan_core.synthetic.infection import CONSOLIDATION_HU, GGO_HU
from dsan_core.synthetic.sites import site_profiles

SHAPE = (40, 64, 64)
SPACING = (5.625, 5.625, 1.5)
TEST_CONFIG = SynthConfig(
    n_patients=10, repeat_fraction=0.3, matrix=64, n_slices=40, slice_thickness_mm=1.5,
    sites=("site-a", "site-b"),
)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CohortSummary]:
    out = tmp_path_factory.mktemp("cohort")
    calls: list[tuple[int, int]] = []
    summary = generate_cohort(TEST_CONFIG, out, progress=lambda d, t: calls.append((d, t)))
    total = len(plan_cohort(TEST_CONFIG).studies)
    assert calls[-1] == (total, total)
    return out, summary


# --- phantoms -------------------------------------------------------------------------


@pytest.mark.parametrize("diagnosis", ["COVID", "CAP"])
@pytest.mark.parametrize("target", [0.0005, 0.004, 0.02, 0.15])
def test_make_phantom_hits_target_ratio(diagnosis: str, target: float) -> None:
    phantom = make_phantom(SHAPE, SPACING, np.random.default_rng(3), diagnosis=diagnosis,  # type: ignore[arg-type]
                           target_ratio=target)
    assert phantom.infection_ratio == pytest.approx(target, rel=0.10)
    assert phantom.hu.dtype == np.int16 and phantom.hu.shape == SHAPE
    assert phantom.lung.dtype == np.uint8 and phantom.infection.dtype == np.uint8
    assert set(np.unique(phantom.infection)) <= {0, 1}
    assert not np.any(phantom.infection & (1 - phantom.lung)), "infection outside the lung"


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


def _sides(infection: np.ndarray) -> set[str]:
    x = np.nonzero(infection)[2]
    half = infection.shape[2] / 2
    return {"right" if xi < half else "left" for xi in x}


def test_covid_bilateral_cap_mostly_unilateral() -> None:
    covid = [make_phantom(SHAPE, SPACING, np.random.default_rng(s), diagnosis="COVID",
                          target_ratio=0.03) for s in range(5)]
    cap = [make_phantom(SHAPE, SPACING, np.random.default_rng(s), diagnosis="CAP",
                        target_ratio=0.03) for s in range(5)]
    assert sum(len(_sides(p.infection)) == 2 for p in covid) >= 4
    assert sum(len(_sides(p.infection)) == 1 for p in cap) >= 3


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


# --- plan -----------------------------------------------------------------------------


def test_plan_is_deterministic_with_realistic_fake_identities() -> None:
    plan = plan_cohort(TEST_CONFIG)
    assert plan == plan_cohort(TEST_CONFIG)
    ids = [p.patient_id for p in plan.patients]
    names = [p.name for p in plan.patients]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    assert all(len(i) == 10 and i.startswith("PID") and i[3:].isdigit() for i in ids)
    assert all("^" in n for n in names)
    for study in plan.studies:
        birth = plan.patient(study.patient_number).birth_date
        years = (study.study_date - birth).days / 365.25
        assert abs(years - study.age_years) < 1.0
        assert TEST_CONFIG.first_date <= study.study_date <= TEST_CONFIG.last_date


def test_plan_pins_all_four_sampling_groups() -> None:
    plan = plan_cohort(TEST_CONFIG)
    groups = {sampling_group(s.diagnosis, s.target_ratio) for s in plan.studies
              if s.role == "cohort"}
    assert groups == {"covid_small", "covid_large", "cap_small", "cap_large"}


def test_stored_pixels_follow_site_representation() -> None:
    signed, unsigned = site_profiles(("a", "b"))  # GE int16/16 bit, SIEMENS uint16/12 bit
    hu = np.array([-2000, -1024, 0, 3071, 5000], dtype=np.int16)
    assert stored_pixels(hu, signed).tolist() == [-976, 0, 1024, 4095, 5000 + 1024]
    assert stored_pixels(hu, unsigned).tolist() == [0, 0, 1024, 4095, 4095]
    assert stored_pixels(hu, unsigned).dtype == np.uint16


@pytest.mark.parametrize("ratio, expected", [(0.0049, "<0.005"), (0.005, "0.005-0.030"),
                                             (0.030, "0.005-0.030"), (0.031, ">0.030")])
def test_ratio_bin_edges(ratio: float, expected: str) -> None:
    assert ratio_bin(ratio) == expected


# --- generated cohort -----------------------------------------------------------------


def test_labels_and_ground_truth_tables(cohort: tuple[Path, CohortSummary]) -> None:
    out, summary = cohort
    columns, labels = _read_csv(out / "labels.csv")
    assert tuple(columns) == LABEL_COLUMNS
    assert {r["diagnosis"] for r in labels} == {"COVID", "CAP"}
    assert all(date.fromisoformat(r["acquisition_date"]) for r in labels)
    assert {r["site"] for r in labels} <= set(TEST_CONFIG.sites)
    assert len(labels) == summary.label_rows
    columns, truth = _read_csv(out / "ground_truth.csv")
    assert tuple(columns) == GROUND_TRUTH_COLUMNS
    assert len(truth) == summary.thin_series
    for row in truth:
        assert float(row["infection_ml"]) <= float(row["lung_ml"])
        assert row["ratio_bin"] == ratio_bin(float(row["infection_ratio"]))


def test_all_four_sampling_groups_present(cohort: tuple[Path, CohortSummary]) -> None:
    out, summary = cohort
    assert set(summary.per_sampling_group) == {"covid_small", "covid_large", "cap_small",
                                               "cap_large"}
    assert "broken inputs" in summary.as_text()


def _series_files(out: Path, description_part: str) -> list[Path]:
    return sorted(p for p in (out / "dicom").rglob("*.dcm")
                  if description_part in pydicom.dcmread(p, stop_before_pixels=True).get(
                      "SeriesDescription", ""))


def test_dicom_tags_and_hu_round_trip(cohort: tuple[Path, CohortSummary]) -> None:
    out, _ = cohort
    plan = plan_cohort(TEST_CONFIG)
    study = plan.studies[0]
    patient = plan.patient(study.patient_number)
    folder = out / "dicom" / "P0001" / "S0001" / "SE0002"
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == TEST_CONFIG.n_slices
    ds = pydicom.dcmread(files[7])
    assert ds.preamble == b"\x00" * 128
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(ds.PixelSpacing[0]) == TEST_CONFIG.fov_mm / TEST_CONFIG.matrix
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 1.5
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert ds.StudyInstanceUID == study.study_instance_uid
    assert ds.PatientName == patient.name and ds.PatientID == patient.patient_id
    assert ds.PatientBirthDate == patient.birth_date.strftime("%Y%m%d")
    for keyword in ("FrameOfReferenceUID", "SliceLocation", "InstanceNumber", "Manufacturer",
                    "ManufacturerModelName", "InstitutionName", "StudyDate", "AcquisitionDate",
                    "StudyTime", "AccessionNumber", "StudyID", "SeriesNumber", "KVP",
                    "ConvolutionKernel", "WindowCenter", "WindowWidth", "PatientSex",
                    "PatientAge", "BitsStored", "PixelRepresentation"):
        assert keyword in ds, keyword
    px = TEST_CONFIG.fov_mm / TEST_CONFIG.matrix
    phantom = make_phantom(SHAPE, (px, px, 1.5), np.random.default_rng(list(study.seed)),
                           diagnosis=study.diagnosis, target_ratio=study.target_ratio)
    hu = apply_rescale(ds.pixel_array, ds)
    assert np.array_equal(hu, phantom.hu[int(ds.InstanceNumber) - 1])


def test_localizer_and_thick_series(cohort: tuple[Path, CohortSummary]) -> None:
    out, _ = cohort
    study = out / "dicom" / "P0001" / "S0001"
    (scout,) = sorted((study / "SE0001").glob("*.dcm"))
    ds = pydicom.dcmread(scout)
    assert "LOCALIZER" in ds.ImageType and ds.Rows == TEST_CONFIG.n_slices
    thick = sorted((study / "SE0003").glob("*.dcm"))
    assert len(thick) == TEST_CONFIG.n_slices // 3
    assert float(pydicom.dcmread(thick[0]).SliceThickness) == pytest.approx(4.5)


def test_masks_overlay_the_thin_series(cohort: tuple[Path, CohortSummary]) -> None:
    out, _ = cohort
    _, truth = _read_csv(out / "ground_truth.csv")
    folder = out / "dicom" / "P0001" / "S0001" / "SE0002"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    uid = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    assert uid in {r["series_instance_uid"] for r in truth}
    for kind in ("lung", "infection"):
        mask = sitk.ReadImage(str(out / "masks" / f"{uid}_{kind}.nii.gz"))
        assert mask.GetSize() == image.GetSize()
        assert mask.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-4)
        np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(mask.GetDirection(), image.GetDirection(), atol=1e-6)
    lung = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / f"{uid}_lung.nii.gz")))
    ct = sitk.GetArrayFromImage(image)
    assert np.median(ct[lung > 0]) < -700  # the mask lands on lung, not on tissue


def test_broken_inputs_present(cohort: tuple[Path, CohortSummary]) -> None:
    out, summary = cohort
    kinds = {b.kind for b in summary.broken_inputs}
    assert kinds == {"truncated_file", "missing_slice", "non_ct_series", "label_without_dicom",
                     "dicom_without_label", "non_dicom_file"}
    by_kind = {b.kind: b for b in summary.broken_inputs}
    truncated = out / str(by_kind["truncated_file"].path)
    with pytest.raises(Exception):  # noqa: B017 - any decoding failure will do
        pydicom.dcmread(truncated).pixel_array  # noqa: B018
    missing = out / str(by_kind["missing_slice"].path)
    numbers = sorted(int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)
                     for p in missing.glob("*.dcm"))
    assert len(numbers) == TEST_CONFIG.n_slices - 1 and numbers[-1] == TEST_CONFIG.n_slices
    (other,) = (out / str(by_kind["non_ct_series"].path)).glob("*.dcm")
    assert pydicom.dcmread(other).Modality != "CT"
    for b in summary.broken_inputs:
        if b.kind == "non_dicom_file":
            with pytest.raises(pydicom.errors.InvalidDicomError):
                pydicom.dcmread(out / str(b.path))
    _, labels = _read_csv(out / "labels.csv")
    labelled = {r["study_instance_uid"] for r in labels}
    written = {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
               for p in (out / "dicom").rglob("IM0001.dcm")}
    assert by_kind["label_without_dicom"].study_instance_uid in labelled - written
    assert by_kind["dicom_without_label"].study_instance_uid in written - labelled


def test_no_identifiers_in_paths(cohort: tuple[Path, CohortSummary]) -> None:
    out, _ = cohort
    plan = plan_cohort(TEST_CONFIG)
    paths = [str(p.relative_to(out)) for p in out.rglob("*")]
    for patient in plan.patients:
        surname = patient.name.split("^")[0]
        assert not any(patient.patient_id in p or surname in p for p in paths)


def test_generation_is_deterministic_and_idempotent(
    cohort: tuple[Path, CohortSummary], tmp_path: Path
) -> None:
    out, summary = cohort
    first = _tree_hashes(out)
    again = generate_cohort(TEST_CONFIG, tmp_path / "again")
    assert _tree_hashes(tmp_path / "again") == first
    assert again == summary
    generate_cohort(TEST_CONFIG, out)  # over an existing export
    assert _tree_hashes(out) == first
    assert not list(out.rglob("*.tmp*"))
