"""Ingestion through the real Prefect engine: synth -> ingest -> full cache hit ->
one changed file re-ingests only its series; privacy; pydicom's real-world files."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from dsan_core.errors import InputError
from dsan_core.synthetic import plan_cohort
from dsan_core.synthetic.study_writer import THIN
from flows.ingestion import ingestion_flow
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.tables import read_table
from tasks.ingest import IngestOutcome
from tests.flows.conftest import copy_patients

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _ingest(cohort: Path, root: Path, config) -> IngestOutcome:  # type: ignore[no-untyped-def]
    export = ExportLocation(dicom_root=cohort / "dicom", labels=cohort / "labels.csv",
                            masks=cohort / "masks")
    return ingestion_flow(export, config.ingest, config.runtime, root)


def test_ingest_rerun_and_single_file_change(cohort: Path, tmp_path: Path, test_config,  # type: ignore[no-untyped-def]
                                             caplog: pytest.LogCaptureFixture) -> None:
    export = tmp_path / "export"
    shutil.copytree(cohort, export)
    root = tmp_path / "data"
    caplog.set_level(logging.DEBUG)

    first = _ingest(export, root, test_config).summary
    assert first.scans >= 10 and first.series_cached == 0
    assert first.files_found == (first.files_in_scans + first.files_in_skipped_series
                                    + first.files_quarantined)
    layout = DataLayout(root)
    scans = read_table(layout, "scans")
    quarantine = read_table(layout, "quarantine")
    assert set(quarantine["reason"]) >= {"not_dicom", "truncated", "missing_slice",
                                         "label_without_dicom", "dicom_without_label"}
    assert len(read_table(layout, "ground_truth")) == len(scans)
    assert set(scans["label"]) == {"COVID", "CAP"}

    second = _ingest(export, root, test_config).summary
    assert second.series_decoded == 0 and second.series_cached == first.scans
    lineage = read_lineage(layout)
    assert list(lineage.loc[lineage["stage"] == "ingest", "cache_hit"]) == [False, True]

    # Change one pixel of one slice of one chosen thin series.
    victim = sorted((export / "dicom").glob("P0001/S0001/SE0002/*.dcm"))[5]
    dataset = pydicom.dcmread(victim)
    pixels = dataset.pixel_array.copy()
    pixels[10, 10] = pixels[10, 10] + 7
    dataset.PixelData = pixels.astype(pixels.dtype).tobytes()
    dataset.save_as(victim)
    third = _ingest(export, root, test_config).summary
    assert third.series_decoded == 1 and third.series_cached == first.scans - 1
    changed = read_table(layout, "scans").merge(scans, on="scan_id", suffixes=("", "_before"))
    assert (changed["volume_hash"] != changed["volume_hash_before"]).sum() == 1
    lineage = read_lineage(layout)
    assert list(lineage.loc[lineage["stage"] == "ingest", "cache_hit"]) == [False, True, False]

    # Privacy: no fake name, patient id, birth date, raw UID or raw path anywhere.
    plan = plan_cohort(test_config.synth)
    labels = pd.read_csv(export / "labels.csv", dtype=str)
    secrets = {str(export), "P0001/S0001"}
    for patient in plan.patients:
        secrets |= {patient.name, patient.patient_id, patient.birth_date.strftime("%Y%m%d"),
                    patient.name.split("^")[0]}
    secrets |= set(labels["study_instance_uid"])
    texts = [(record.getMessage(), True) for record in caplog.records]
    for path in root.rglob("*"):
        if path.is_file() and "prefect" not in path.parts:
            raw = path.read_bytes()
            try:
                texts.append((raw.decode("utf-8"), True))
            except UnicodeDecodeError:  # compressed volumes, Parquet, checkpoints
                texts.append((raw.decode("latin-1"), False))
    for secret in secrets:
        # Word-bounded: a two-letter surname such as LI is inside PUBLIC, which is no leak;
        # and such a short one turns up by chance in compressed bytes, so it is looked
        # for in text only (the full name, ids and UIDs are looked for everywhere).
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")
        for text, is_text in texts:
            # `in` first: the same verdict (the pattern needs the substring), ~10x faster.
            if (is_text or len(secret) >= 4) and secret in text:
                assert not pattern.search(text), f"a raw identifier leaked: {secret[:3]}..."


def test_pydicom_test_files_are_each_indexed_or_quarantined(tmp_path: Path,
                                                           test_config) -> None:  # type: ignore[no-untyped-def]
    from pydicom.data import get_testdata_files

    export = tmp_path / "export"
    for i, source in enumerate(sorted(get_testdata_files())):
        if Path(source).is_file():
            target = export / f"{i:03d}" / Path(source).name
            target.parent.mkdir(parents=True)
            shutil.copyfile(source, target)
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,study_instance_uid,diagnosis,site,acquisition_date\n")
    # No labels: no usable scan, a clear error once every file is accounted for.
    with pytest.raises(InputError, match="no usable series") as refused:
        ingestion_flow(ExportLocation(dicom_root=export, labels=labels), test_config.ingest,
                       test_config.runtime, tmp_path / "data")
    n_files = sum(1 for p in export.rglob("*") if p.is_file())
    assert f"{n_files} file(s) found" in str(refused.value)
    series = read_table(DataLayout(tmp_path / "data"), "series")
    quarantine = read_table(DataLayout(tmp_path / "data"), "quarantine")
    in_series = int(series.loc[series["status"].isin(["chosen", "skipped"]), "n_files"].sum())
    assert n_files == in_series + int(quarantine["n_files"].sum())
    assert quarantine["reason"].str.len().gt(0).all()
    assert (quarantine["kind"] == "file").sum() > 10
    assert np.isin(["not_dicom", "no_pixel_data"], quarantine["reason"]).all()


def test_a_ground_truth_mask_that_is_not_binary_is_quarantined(cohort: Path, tmp_path: Path,
                                                               test_config) -> None:  # type: ignore[no-untyped-def]
    import SimpleITK as sitk

    export = copy_patients(cohort, tmp_path / "export", (1, 2))
    # A lung mask of a thin series in the export (the cohort's plan names it).
    in_export = {study.series_uid(THIN.number) for study in plan_cohort(test_config.synth).studies
                 if study.patient_number in (1, 2)}
    victim = next(mask for mask in sorted((export / "masks").glob("*_lung.nii.gz"))
                  if mask.name.removesuffix("_lung.nii.gz") in in_export)
    image = sitk.ReadImage(str(victim))
    scaled = sitk.Cast(image, sitk.sitkUInt8) * 255  # a 0/255 export
    scaled.CopyInformation(image)
    sitk.WriteImage(scaled, str(victim))
    root = tmp_path / "data"
    summary = _ingest(export, root, test_config).summary
    layout = DataLayout(root)
    quarantine = read_table(layout, "quarantine")
    refused = quarantine[quarantine["reason"] == "mask_not_binary"]
    assert len(refused) == 1 and "expected binary values 0/1" in refused["message"].iloc[0]
    assert summary.ground_truth_masks == summary.scans - 1
    assert refused["series_id"].iloc[0] not in set(read_table(layout, "ground_truth")["scan_id"])
