from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from dsan_core.dicom.labels import OUTCOMES, normalise_diagnosis, read_labels, reconcile_labels
from dsan_core.errors import LabelsError

HEADER = "patient_id,study_instance_uid,diagnosis,site,acquisition_date,split\n"
ROWS = [
    "P1,1.1,COVID-19,site-a,2020-02-01,tv",          # matched
    "P2,1.2, cap ,site-b,20200203,test",             # matched (DICOM date format)
    "P3,1.3,,site-a,2020-02-04,tv",                  # missing_label
    "P4,1.4,influenza,site-a,2020-02-05,tv",         # unknown_label
    "P5,1.5,covid,site-a,2020-02-06,tv",             # matched + duplicate_identical
    "P5,1.5,COVID,site-a,2020-02-06,tv",             # duplicate_identical (normalised equal)
    "P6,1.6,covid,site-a,2020-02-07,tv",             # duplicate_conflict
    "P6,1.6,pneumonia,site-a,2020-02-07,tv",         # duplicate_conflict
    "P7,1.7,CAP,site-c,2020-02-08,tv",               # label_without_dicom
    "P8,1.8,CAP,site-c,2020-02-09,tv",               # patient_mismatch
    "P9,1.9,Community-acquired pneumonia,site-c,not a date,tv",  # matched + bad_date
]
STUDIES = pd.DataFrame({
    "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6", "P8x", "P9", "P10"],
    "study_instance_uid": ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.8", "1.9", "1.10"],
})


@pytest.fixture()
def labels_path(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("COVID", "COVID"), ("covid-19", "COVID"), ("Covid 19", "COVID"), ("SARS-CoV-2", "COVID"),
    ("CAP", "CAP"), ("pneumonia", "CAP"), ("community acquired pneumonia", "CAP"),
    ("non-COVID pneumonia", "CAP"), ("", ""), ("  ", ""), ("flu", None), ("healthy", None),
])
def test_normalise_diagnosis(text: str, expected: str | None) -> None:
    assert normalise_diagnosis(text) == expected


def test_read_labels_keeps_extra_columns(labels_path: Path) -> None:
    frame = read_labels(labels_path)
    assert "split" in frame.columns
    assert frame.loc[1, "diagnosis"] == "cap"
    assert frame["row_number"].tolist()[:2] == [2, 3]


@pytest.mark.parametrize("column", ["patient_id", "diagnosis", "acquisition_date"])
def test_missing_column_is_named(tmp_path: Path, column: str) -> None:
    names = [c for c in HEADER.strip().split(",") if c != column]
    path = tmp_path / "bad.csv"
    path.write_text(",".join(names) + "\n" + ",".join("x" for _ in names) + "\n")
    with pytest.raises(LabelsError, match=column):
        read_labels(path)


def test_every_outcome_counted(labels_path: Path) -> None:
    result = reconcile_labels(read_labels(labels_path), STUDIES)
    assert set(result.counts) == set(OUTCOMES)
    assert result.counts == {
        "matched": 4, "missing_label": 1, "unknown_label": 1, "duplicate_identical": 1,
        "duplicate_conflict": 2, "patient_mismatch": 1, "label_without_dicom": 1,
        "dicom_without_label": 5, "bad_date": 1,
    }
    labelled = result.labels.set_index("study_instance_uid")
    assert labelled["label"].to_dict() == {"1.1": "COVID", "1.2": "CAP", "1.5": "COVID",
                                           "1.9": "CAP"}
    assert labelled.loc["1.2", "acquisition_date"] == dt.date(2020, 2, 3)
    assert pd.isna(labelled.at["1.9", "acquisition_date"])  # type: ignore[arg-type]
    assert labelled.loc["1.2", "split"] == "test"
    without = result.issues[result.issues["outcome"] == "dicom_without_label"]
    assert sorted(without["study_instance_uid"]) == ["1.10", "1.3", "1.4", "1.6", "1.8"]


def test_studies_need_uid_column() -> None:
    with pytest.raises(LabelsError, match="study_instance_uid"):
        reconcile_labels(pd.DataFrame(columns=list(HEADER.strip().split(","))),
                         pd.DataFrame({"uid": []}))
