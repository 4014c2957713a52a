"""The written export: DICOM, masks, labels, ground truth, broken inputs, determinism
(dsan_core.synthetic.generate), on the test profile's cohort."""

from __future__ import annotations

import csv
import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_rescale

from dsan_core.config import SynthConfig, load_profile
from dsan_core.synthetic import (
    GROUND_TRUTH_COLUMNS,
    LABEL_COLUMNS,
    CohortSummary,
    generate_cohort,
    plan_cohort,
    ratio_bin,
    sampling_group,
    study_phantom,
)
from dsan_core.synthetic.dicom_export import stored_pixels
from dsan_core.synthetic.ratios import expected_weights
from dsan_core.synthetic.sites import site_profiles
from tests.conftest import GeneratedCohort

PROFILES = Path(__file__).resolve().parents[3] / "profiles"
TEST_CONFIG: SynthConfig = load_profile(PROFILES / "test.yaml").synth


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
def cohort(generated_cohort: GeneratedCohort) -> tuple[Path, CohortSummary]:
    """The session's test-profile export (tests/conftest.py), written with a progress
    callback that reached every study."""
    total = len(plan_cohort(TEST_CONFIG).studies)
    assert generated_cohort.progress[-1] == (total, total)
    return generated_cohort.root, generated_cohort.summary


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
    assert {r["site"] for r in labels} <= {*TEST_CONFIG.sites, TEST_CONFIG.later_cap_site}
    assert len(labels) == summary.label_rows
    columns, truth = _read_csv(out / "ground_truth.csv")
    assert tuple(columns) == GROUND_TRUTH_COLUMNS
    assert len(truth) == summary.thin_series
    for row in truth:
        assert float(row["infection_ml"]) <= float(row["lung_ml"])
        assert row["ratio_bin"] == ratio_bin(float(row["infection_ratio"]))


def test_summary_counts_groups_weights_and_sets(cohort: tuple[Path, CohortSummary]) -> None:
    out, summary = cohort
    assert set(summary.per_sampling_group) == {"covid_small", "covid_large", "cap_small",
                                               "cap_large"}
    _, truth = _read_csv(out / "ground_truth.csv")
    plan = plan_cohort(TEST_CONFIG)
    by_uid = {s.series_uid(2): s for s in plan.cohort_studies()}
    groups: dict[str, dict[str, int]] = {}
    for row in truth:
        study = by_uid.get(row["series_instance_uid"])
        if study is not None:
            group = sampling_group(study.diagnosis, float(row["infection_ratio"]))
            counts = groups.setdefault(study.cohort_set, {})
            counts[group] = counts.get(group, 0) + 1
    assert summary.groups_per_set == groups
    assert sum(summary.per_set["later"].values()) == sum(groups["later"].values())
    earlier = groups["earlier"]
    w = summary.realised_weights("earlier")
    assert w["covid_small"] == earlier["covid_large"] / earlier["covid_small"]
    assert w["cap_large"] == earlier["cap_small"] / earlier["cap_large"]
    text = summary.as_text()
    assert "broken inputs" in text
    assert f"earlier (before {TEST_CONFIG.later_cutoff}): COVID" in text
    expected = expected_weights("earlier", TEST_CONFIG.balanced_fraction)  # 0.72 and 0.83
    assert f"W_covid_small {expected['covid_small']:.2f} / " in text
    assert f"W_cap_large {expected['cap_large']:.2f} / " in text


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
    phantom = study_phantom(TEST_CONFIG, study)
    hu = apply_rescale(ds.pixel_array, ds)
    assert np.array_equal(hu, phantom.hu[int(ds.InstanceNumber) - 1])


def test_localizer_and_thick_series(cohort: tuple[Path, CohortSummary]) -> None:
    out, _ = cohort
    study_dir = out / "dicom" / "P0001" / "S0001"
    phantom = study_phantom(TEST_CONFIG, plan_cohort(TEST_CONFIG).studies[0])
    (scout,) = sorted((study_dir / "SE0001").glob("*.dcm"))
    ds = pydicom.dcmread(scout)
    assert "LOCALIZER" in ds.ImageType and ds.Rows == TEST_CONFIG.n_slices
    projection = np.rint(phantom.hu.astype(np.float32).mean(axis=1)[::-1])
    assert np.array_equal(apply_rescale(ds.pixel_array, ds), projection)
    thick = sorted((study_dir / "SE0003").glob("*.dcm"))
    assert len(thick) == TEST_CONFIG.n_slices // 3
    second = pydicom.dcmread(thick[1])
    assert float(second.SliceThickness) == pytest.approx(4.5)
    mean = np.rint(phantom.hu[3:6].astype(np.float32).sum(axis=0) / 3)
    assert np.array_equal(apply_rescale(second.pixel_array, second), mean)


def test_privacy_canaries_are_in_every_patients_dicom(cohort: tuple[Path, CohortSummary]
                                                      ) -> None:
    out, _ = cohort
    plan = plan_cohort(TEST_CONFIG)
    for patient in plan.patients:
        files = sorted((out / "dicom" / f"P{patient.number:04d}").rglob("IM0001.dcm"))
        if not files:
            continue  # label_without_dicom
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert ds.PatientName == patient.name and ds.PatientID == patient.patient_id
        assert ds.PatientBirthDate == patient.birth_date.strftime("%Y%m%d")


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


def test_generation_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    config = TEST_CONFIG.model_copy(update={"n_patients": 6})
    summary = generate_cohort(config, tmp_path / "first")
    first = _tree_hashes(tmp_path / "first")
    # Two worker processes write the same bytes and the same summary.
    again = generate_cohort(config, tmp_path / "again", workers=2)
    assert _tree_hashes(tmp_path / "again") == first
    assert again == summary
    generate_cohort(config, tmp_path / "first")  # over an existing export
    assert _tree_hashes(tmp_path / "first") == first
    assert not list((tmp_path / "first").rglob("*.tmp*"))
