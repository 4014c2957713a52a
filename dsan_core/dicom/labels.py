"""Read the labels manifest and reconcile it with the DICOM studies found.

The CSV needs the columns of `REQUIRED_COLUMNS`; extra columns (e.g. "split") are
kept. Diagnoses are normalised to "COVID" or "CAP" (`normalise_diagnosis`).
Every row and every DICOM study ends in exactly one counted outcome:

    matched              a usable label for a study that has DICOM
    missing_label        empty diagnosis (row dropped)
    unknown_label        a diagnosis that is neither COVID nor CAP (row dropped)
    duplicate_identical  an extra row repeating an earlier one (extra dropped, one kept)
    duplicate_conflict   rows for one study that disagree (all dropped, counted per row)
    patient_mismatch     the label's patient_id differs from the study's (dropped)
    label_without_dicom  a usable label whose study has no DICOM (dropped)
    dicom_without_label  a DICOM study with no usable label
    bad_date             acquisition_date not parseable (row kept, date NaT; also counted)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dsan_core.errors import LabelsError

REQUIRED_COLUMNS = ("patient_id", "study_instance_uid", "diagnosis", "site", "acquisition_date")
OUTCOMES = (
    "matched", "missing_label", "unknown_label", "duplicate_identical", "duplicate_conflict",
    "patient_mismatch", "label_without_dicom", "dicom_without_label", "bad_date",
)
_COVID = {"covid", "covid19", "covid2019", "sarscov2", "covid19pneumonia", "covidpneumonia",
          "ncp", "ncov", "2019ncov", "novelcoronaviruspneumonia"}
_CAP = {"cap", "pneumonia", "communityacquiredpneumonia", "noncovidpneumonia",
        "noncovid19pneumonia", "bacterialpneumonia", "cappneumonia"}
#: Columns compared to tell identical duplicates from conflicting ones.
_SAME_LABEL = ("patient_id", "label", "site", "acquisition_date")


@dataclass(frozen=True)
class LabelsReconciliation:
    """`labels`: one usable row per matched study (raw ids, in memory only) with `label`
    ("COVID"/"CAP") and parsed `acquisition_date`; `issues`: one row per counted problem
    (outcome, row_number, study_instance_uid, message); `counts`: every outcome, zeros too."""

    labels: pd.DataFrame
    issues: pd.DataFrame
    counts: dict[str, int]


def normalise_diagnosis(text: str) -> str | None:
    """"COVID", "CAP", "" for an empty diagnosis, None when unknown."""
    key = re.sub(r"[^a-z0-9]", "", str(text).lower())
    if not key:
        return ""
    if key in _COVID:
        return "COVID"
    if key in _CAP:
        return "CAP"
    return None


def read_labels(path: Path) -> pd.DataFrame:
    """The manifest as strings (whitespace stripped) plus `row_number` (line in the file)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise LabelsError("labels manifest not found") from None
    except IsADirectoryError:
        raise LabelsError("labels manifest is a folder, not a CSV file",
                          reason="bad_csv") from None
    except PermissionError:
        raise LabelsError("labels manifest cannot be read by this user",
                          reason="bad_csv") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelsError(f"labels manifest is not a readable CSV ({type(error).__name__})",
                          reason="bad_csv") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise LabelsError(f"labels manifest lacks required column '{column}' "
                              f"(found {sorted(frame.columns)})", reason="missing_column")
    frame = frame.apply(lambda col: col.str.strip())
    frame["row_number"] = range(2, len(frame) + 2)  # line 1 is the header
    return frame


def _parse_dates(values: pd.Series) -> pd.Series:
    iso = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
    dicom = pd.to_datetime(values, format="%Y%m%d", errors="coerce")
    return iso.fillna(dicom)


def reconcile_labels(labels: pd.DataFrame, studies: pd.DataFrame) -> LabelsReconciliation:
    """Match `read_labels` rows to DICOM `studies` (columns study_instance_uid and,
    optionally, patient_id - e.g. `SeriesPlan.studies`). See the module docstring."""
    if "study_instance_uid" not in studies.columns:
        raise LabelsError("studies table lacks column 'study_instance_uid'",
                          reason="missing_column")
    issues: list[dict[str, object]] = []

    def note(outcome: str, rows: pd.DataFrame, message: str) -> None:
        for _, row in rows.iterrows():
            issues.append({"outcome": outcome, "row_number": row.get("row_number"),
                           "study_instance_uid": row["study_instance_uid"], "message": message})

    frame = labels.copy()
    frame["label"] = frame["diagnosis"].map(normalise_diagnosis)
    missing = frame["label"] == ""
    note("missing_label", frame[missing], "empty diagnosis")
    unknown = frame["label"].isna()
    note("unknown_label", frame[unknown], "diagnosis is neither COVID nor CAP")
    frame = frame[~missing & ~unknown]

    dates = _parse_dates(frame["acquisition_date"])
    note("bad_date", frame[dates.isna()], "acquisition_date is not YYYY-MM-DD or YYYYMMDD")
    frame = frame.assign(acquisition_date=dates.dt.date)

    repeated = frame["study_instance_uid"].duplicated(keep=False)
    keep = ~repeated
    for _uid, group in frame[repeated].groupby("study_instance_uid", sort=False):
        distinct = group[list(_SAME_LABEL)].astype(str).drop_duplicates()
        if len(distinct) == 1:
            note("duplicate_identical", group.iloc[1:], "repeats an earlier row")
            keep[group.index[0]] = True
        else:
            note("duplicate_conflict", group, f"{len(group)} rows disagree for one study")
    frame = frame[keep]

    known = studies.drop_duplicates("study_instance_uid").set_index("study_instance_uid")
    has_dicom = frame["study_instance_uid"].isin(known.index)
    note("label_without_dicom", frame[~has_dicom], "no DICOM study with this UID")
    frame = frame[has_dicom]
    if "patient_id" in known.columns:
        dicom_patient = frame["study_instance_uid"].map(known["patient_id"]).astype(str)
        mismatch = dicom_patient != frame["patient_id"].astype(str)
        note("patient_mismatch", frame[mismatch], "patient_id differs from the DICOM header")
        frame = frame[~mismatch]

    unlabelled = known.index.difference(pd.Index(frame["study_instance_uid"]))
    for uid in unlabelled:
        issues.append({"outcome": "dicom_without_label", "row_number": None,
                       "study_instance_uid": uid, "message": "no usable label for this study"})
    issue_frame = pd.DataFrame(issues, columns=["outcome", "row_number", "study_instance_uid",
                                                "message"])
    counts = {outcome: int((issue_frame["outcome"] == outcome).sum()) for outcome in OUTCOMES}
    counts["matched"] = len(frame)
    return LabelsReconciliation(labels=frame.reset_index(drop=True), issues=issue_frame,
                                counts=counts)
