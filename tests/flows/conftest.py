"""A synthetic test-profile cohort and its ingested data root, built once per session.
Tests that change a data root work on a copy (`ingested_copy`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory, test_config) -> Path:  # type: ignore[no-untyped-def]
    from dsan_core.synthetic import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(test_config.synth, out)
    return out


@pytest.fixture(scope="session")
def ingested_root(tmp_path_factory: pytest.TempPathFactory, cohort: Path, test_config,  # type: ignore[no-untyped-def]
                  prefect_harness: None) -> Path:
    from flows.ingestion import ingestion_flow
    from storage.inputs import ExportLocation

    root = tmp_path_factory.mktemp("ingested")
    export = ExportLocation(dicom_root=cohort / "dicom", labels=cohort / "labels.csv",
                            masks=cohort / "masks")
    ingestion_flow(export, test_config.ingest, test_config.runtime, root)
    return root


@pytest.fixture
def ingested_copy(ingested_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(ingested_root, target)
    return target


@pytest.fixture(scope="session")
def pipeline_root(tmp_path_factory: pytest.TempPathFactory, cohort: Path, test_config,  # type: ignore[no-untyped-def]
                  prefect_harness: None) -> Path:
    """The whole pipeline (DICOM to report) on the test cohort, once per session."""
    from flows.pipeline import pipeline_flow
    from storage.inputs import ExportLocation

    root = tmp_path_factory.mktemp("pipeline")
    export = ExportLocation(dicom_root=cohort / "dicom", labels=cohort / "labels.csv",
                            masks=cohort / "masks")
    pipeline_flow(export, test_config, root)
    return root


@pytest.fixture
def pipeline_copy(pipeline_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(pipeline_root, target)
    return target
