"""A synthetic test-profile cohort, a drop for retraining, its ingested data root, that
root prepared for classifier training, and its whole pipeline run through the CLI, each
built once per session. Tests that change a data root work on a copy (`ingested_copy`,
`prepared_copy`, `pipeline_copy`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import GeneratedCohort


@pytest.fixture(scope="session")
def cohort(generated_cohort: GeneratedCohort) -> Path:
    return generated_cohort.root


@pytest.fixture(scope="session")
def drop(tmp_path_factory: pytest.TempPathFactory, test_config) -> Path:  # type: ignore[no-untyped-def]
    """A new drop for retraining: other patients (another seed), the same sites and dates.
    Read only, like `cohort`."""
    from dsan_core.synthetic import generate_cohort

    out = tmp_path_factory.mktemp("drop")
    generate_cohort(test_config.synth.model_copy(update={
        "seed": 777, "n_patients": 8, "include_broken": False}), out)
    return out


def copy_patients(cohort: Path, target: Path, numbers: tuple[int, ...]) -> Path:
    """An export of the cohort's patients `numbers` (folders P0001, ...) at `target`:
    their DICOM, every ground-truth mask (the others' match no scan) and every label (the
    others' are recorded as labels without DICOM). For checks that need a real export
    but not all of it (ingesting all 20 patients takes ~10 s more)."""
    for number in numbers:
        folder = f"P{number:04d}"
        shutil.copytree(cohort / "dicom" / folder, target / "dicom" / folder)
    shutil.copytree(cohort / "masks", target / "masks")
    shutil.copy(cohort / "labels.csv", target / "labels.csv")
    return target


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
def prepared_root(tmp_path_factory: pytest.TempPathFactory, ingested_root: Path, test_config,  # type: ignore[no-untyped-def]
                  prefect_harness: None) -> Path:
    """The ingested root segmented (the profile's ground truth, and the predict-time VB-Net
    trained), split and pre-processed: what classifier training starts from."""
    from flows.preprocessing import preprocess_flow
    from flows.segmentation import segmentation_flow
    from flows.splits import split_flow

    root = tmp_path_factory.mktemp("prepared") / "data"
    shutil.copytree(ingested_root, root)
    segmentation_flow(test_config.segmentation, test_config.groups, test_config.runtime, root)
    split_flow(test_config.split, root)
    preprocess_flow(test_config.preprocess, test_config.runtime, root)
    return root


@pytest.fixture
def prepared_copy(prepared_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(prepared_root, target)
    return target


@dataclass(frozen=True)
class CliRun:
    """One `dsan run` through the CLI: its arguments, exit code and output."""

    root: Path
    args: list[str]
    exit_code: int
    output: str

    def args_for(self, root: Path) -> list[str]:
        """The same command on another data root (a copy of this one, say)."""
        at = self.args.index("--data-root")
        return [*self.args[:at + 1], str(root), *self.args[at + 2:]]


@pytest.fixture(scope="session")
def pipeline_cli_run(tmp_path_factory: pytest.TempPathFactory, cohort: Path,
                     prefect_harness: None) -> CliRun:
    """The whole pipeline (DICOM to report) on the test cohort through the CLI (`dsan
    run`), once per session. test_pipeline_cli asserts on its output; every other test
    that needs a finished data root reads `pipeline_root` or changes a copy of it."""
    from typer.testing import CliRunner

    from flows.cli import app
    from storage.layout import DataLayout
    from storage.lock import release

    root = tmp_path_factory.mktemp("pipeline") / "data"
    args = ["run", "--profile", "test", "--dicom-root", str(cohort / "dicom"), "--labels",
            str(cohort / "labels.csv"), "--masks", str(cohort / "masks"), "--data-root",
            str(root)]
    # The CLI sets the embedded Prefect defaults in os.environ and keeps the data root
    # locked for the life of the process: undone here, as after any other test.
    saved = dict(os.environ)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        release(DataLayout(root))
    return CliRun(root, args, result.exit_code, result.output)


@pytest.fixture(scope="session")
def pipeline_root(pipeline_cli_run: CliRun) -> Path:
    """The data root of the session's `dsan run` (read it; change a `pipeline_copy`)."""
    if pipeline_cli_run.exit_code != 0:
        pytest.fail(f"dsan run failed ({pipeline_cli_run.exit_code}):\n"
                    f"{pipeline_cli_run.output}")
    return pipeline_cli_run.root


@pytest.fixture
def pipeline_copy(pipeline_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(pipeline_root, target)
    return target
