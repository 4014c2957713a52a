from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dsan_core.config import IngestConfig
from dsan_core.dicom import reasons
from dsan_core.dicom.index import index_headers
from dsan_core.dicom.series import DECISION_COLUMNS, STUDY_COLUMNS, choose_series
from tests.dsan_core.dicom.dicom_factory import ROOT, write_series

CONFIG = IngestConfig(min_slices=4, max_slice_thickness_mm=2.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _uid(series: str) -> str:
    return ROOT + "2." + series


@pytest.fixture(scope="module")
def study_records(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """One study, eight series, each built to hit one rule."""
    root = tmp_path_factory.mktemp("study")
    paths: list[Path] = []
    paths += write_series(root, 2, series="10", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    paths += write_series(root, 12, series="11", thickness=5.0, spacing=5.0)
    paths += write_series(root, 12, series="12", orientation=CORONAL)
    paths += write_series(root, 12, series="13", image_type=("DERIVED", "SECONDARY", "MPR"))
    paths += write_series(root, 12, series="14", modality="MR")
    paths += write_series(root, 11, series="15", skip=[5])  # most slices, but one missing
    paths += write_series(root, 9, series="16", thickness=1.25, spacing=1.25)
    paths += write_series(root, 6, series="17")
    paths += write_series(root, 3, series="18")
    frame, failures = index_headers(paths)
    assert failures == []
    return frame


def test_choice_and_every_reason(study_records: pd.DataFrame) -> None:
    plan = choose_series(study_records, CONFIG)
    assert list(plan.decisions.columns) == list(DECISION_COLUMNS)
    assert list(plan.studies.columns) == list(STUDY_COLUMNS)
    decided = {row.series_instance_uid: (row.status, row.reason)
               for row in plan.decisions.itertuples()}
    assert decided == {
        _uid("10"): (reasons.SKIPPED, reasons.LOCALIZER),
        _uid("11"): (reasons.SKIPPED, reasons.THICK),
        _uid("12"): (reasons.SKIPPED, reasons.NON_AXIAL),
        _uid("13"): (reasons.SKIPPED, reasons.DERIVED),
        _uid("14"): (reasons.SKIPPED, reasons.NOT_CT),
        _uid("15"): (reasons.REJECTED, reasons.MISSING_SLICE),
        _uid("16"): (reasons.CHOSEN, reasons.CHOSEN),
        _uid("17"): (reasons.SKIPPED, reasons.FEWER_SLICES),
        _uid("18"): (reasons.SKIPPED, reasons.TOO_FEW_SLICES),
    }
    (study,) = plan.studies.itertuples()
    assert study.chosen_series_uid == _uid("16")
    assert study.reason == reasons.CHOSEN
    assert study.n_series == 9
    messages = plan.decisions.set_index("series_instance_uid")["message"]
    assert "fallback" in str(messages[_uid("16")])


def test_chosen_paths_in_slice_order(study_records: pd.DataFrame) -> None:
    plan = choose_series(study_records, CONFIG)
    paths = plan.slice_paths[_uid("16")]
    z = study_records.set_index("path")["ipp_z"].loc[paths].tolist()  # type: ignore[index]
    assert z == [1.25 * k for k in range(9)]
    assert plan.geometry[_uid("16")].spacing_mm == pytest.approx(1.25)
    assert plan.geometry[_uid("15")].reason == reasons.MISSING_SLICE


def test_thickness_threshold_is_strict(study_records: pd.DataFrame) -> None:
    plan = choose_series(study_records, IngestConfig(min_slices=4, max_slice_thickness_mm=1.25))
    chosen = plan.decisions[plan.decisions["status"] == reasons.CHOSEN]
    assert chosen["series_instance_uid"].tolist() == [_uid("17")]
    thin_16 = plan.decisions.set_index("series_instance_uid").loc[_uid("16")]
    assert (thin_16["status"], thin_16["reason"]) == (reasons.SKIPPED, reasons.THICK)


def test_study_without_candidates(tmp_path: Path) -> None:
    paths = write_series(tmp_path, 6, series="20", study="2", modality="MR")
    frame, _ = index_headers(paths)
    plan = choose_series(frame, CONFIG)
    assert plan.studies["reason"].tolist() == [reasons.NO_CANDIDATE_SERIES]
    assert plan.studies["chosen_series_uid"].tolist() == [""]
    assert plan.slice_paths == {}


def test_study_with_all_candidates_rejected(tmp_path: Path) -> None:
    paths = write_series(tmp_path, 8, series="30", study="3", repeat=[3])
    frame, _ = index_headers(paths)
    plan = choose_series(frame, CONFIG)
    assert plan.studies["reason"].tolist() == [reasons.ALL_CANDIDATES_REJECTED]
    assert plan.decisions["reason"].tolist() == [reasons.DUPLICATE_SLICE]


def test_empty_records() -> None:
    frame, _ = index_headers([])
    plan = choose_series(frame, CONFIG)
    assert plan.studies.empty and plan.decisions.empty
