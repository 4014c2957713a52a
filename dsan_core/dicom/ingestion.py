"""The ingestion algorithm between reading headers and writing tables, pure.

    header records --choose_series--> one series per study
                   --reconcile_labels--> labelled studies
                   --plan_ingestion--> decode jobs (chosen series of labelled studies)
    decoded volumes, ground-truth masks, failures --ingestion_tables--> the four tables
                   + the file balance: every file found is in a scan, in a skipped
                     series, or quarantined with a reason

Raw identifiers (UIDs, patient ids, paths) live in memory only; every table row is
pseudonymised by `dsan_core.dicom.rows`. Reading files, decoding, hashing and writing
are done by the caller (the ingestion task), which hands the results back in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dsan_core.config import IngestConfig
from dsan_core.dicom.index import FileFailure
from dsan_core.dicom.labels import LabelsReconciliation, reconcile_labels
from dsan_core.dicom.pseudonym import pseudonymise
from dsan_core.dicom.rows import DecodedSeries, quarantine_rows, scan_row, series_rows
from dsan_core.dicom.series import SeriesPlan, choose_series
from dsan_core.errors import InputError

#: Columns of the scans table, in its schema's order (what `scan_row` fills).
SCAN_COLUMNS: tuple[str, ...] = (
    "scan_id", "patient_id", "study_id", "series_id", "label", "site", "acquisition_date",
    "manufacturer", "age_years", "sex", "n_slices", "shape_z", "shape_y", "shape_x",
    "spacing_x", "spacing_y", "spacing_z", "slice_thickness_mm", "spacing_spread",
    "gantry_tilt_deg", "geometry_flags", "volume_path", "volume_hash", "source_hash",
    "label_split",
)
GROUND_TRUTH_COLUMNS = ("scan_id", "lung_path", "lung_hash", "infection_path", "infection_hash")


@dataclass(frozen=True)
class DecodeJob:
    """A chosen series of a labelled study: raw UIDs (memory only) and its scan id."""

    series_uid: str
    study_uid: str
    scan_id: str
    slice_paths: tuple[Path, ...]


@dataclass(frozen=True)
class IngestPlan:
    series: SeriesPlan
    labels: LabelsReconciliation
    jobs: tuple[DecodeJob, ...]


def plan_ingestion(records: pd.DataFrame, labels: pd.DataFrame, config: IngestConfig,
                   key: bytes) -> IngestPlan:
    """Choose a series per study, reconcile the labels, and list what to decode."""
    series = choose_series(records, config)
    reconciled = reconcile_labels(labels, series.studies)
    labelled = set(reconciled.labels["study_instance_uid"].astype(str))
    wanted = series.studies[series.studies["chosen_series_uid"] != ""]
    jobs = tuple(
        DecodeJob(uid, study, pseudonymise("series", uid, key), tuple(series.slice_paths[uid]))
        for row in wanted.itertuples(index=False)
        if (study := str(row.study_instance_uid)) in labelled
        and (uid := str(row.chosen_series_uid))
    )
    return IngestPlan(series, reconciled, jobs)


@dataclass(frozen=True)
class FileBalance:
    """found = in_scans + skipped + quarantined, file for file."""

    found: int
    in_scans: int
    skipped: int
    quarantined: int


@dataclass(frozen=True)
class IngestTables:
    scans: pd.DataFrame
    series: pd.DataFrame
    quarantine: pd.DataFrame
    ground_truth: pd.DataFrame
    balance: FileBalance

    def frames(self) -> dict[str, pd.DataFrame]:
        return {"scans": self.scans, "series": self.series, "quarantine": self.quarantine,
                "ground_truth": self.ground_truth}


def file_balance(found: int, series: pd.DataFrame, quarantine: pd.DataFrame) -> FileBalance:
    """Where every file went; a RuntimeError (a bug, not bad input) when they do not add up."""
    in_scans = int(series.loc[series["status"] == "chosen", "n_files"].sum())
    skipped = int(series.loc[series["status"] == "skipped", "n_files"].sum())
    quarantined = int(quarantine["n_files"].sum())
    if found != in_scans + skipped + quarantined:
        raise RuntimeError(
            f"file balance does not add up: found {found}, in scans {in_scans}, "
            f"skipped {skipped}, quarantined {quarantined}"
        )
    return FileBalance(found, in_scans, skipped, quarantined)


def ingestion_tables(
    plan: IngestPlan,
    records: pd.DataFrame,
    *,
    n_files: int,
    file_failures: Sequence[FileFailure],
    file_hash: Mapping[str, str | None],
    series_hash: dict[str, str],
    decoded: Mapping[str, DecodedSeries],
    decode_failures: dict[str, str],
    ground_truth: Mapping[str, Mapping[str, str]],
    mask_failures: Mapping[str, tuple[str, str]],
    key: bytes,
) -> IngestTables:
    """The scans, series, quarantine and ground_truth tables, and the file balance.

    `decoded` / `decode_failures` are by raw series UID, `ground_truth` (lung/infection
    paths and hashes) and `mask_failures` ((reason, message)) by scan id; `file_hash` by
    raw file path.
    """
    labelled = {str(r.study_instance_uid): r for r in plan.labels.labels.itertuples(index=False)}
    # One header record (of the series' first file) per decoded series.
    first = records.drop_duplicates("series_instance_uid")
    first_of = {str(row["series_instance_uid"]): row for _, row in first.iterrows()}
    scans = pd.DataFrame(
        [scan_row(first_of[job.series_uid], plan.series.geometry.get(job.series_uid),
                  labelled[job.study_uid], decoded[job.series_uid], series_hash[job.series_uid],
                  key)
         for job in plan.jobs if job.series_uid in decoded],
        columns=list(SCAN_COLUMNS),
    )
    series = series_rows(plan.series, series_hash, key, decoded.keys(), decode_failures)
    quarantine = quarantine_rows(plan.series, file_failures, file_hash, plan.labels, series_hash,
                                 key, decode_failures, mask_failures)
    truth = pd.DataFrame([{"scan_id": scan_id, **dict(paths)}
                          for scan_id, paths in sorted(ground_truth.items())],
                         columns=list(GROUND_TRUTH_COLUMNS))
    return IngestTables(scans, series, quarantine, truth,
                        file_balance(n_files, series, quarantine))


def require_scans(tables: IngestTables) -> None:
    """InputError when an export gave no usable scan: nothing downstream could run. The
    tables are written first, so the quarantine says why for every file."""
    if not tables.scans.empty:
        return
    reasons = (tables.quarantine.groupby("reason")["n_files"].sum()
               .sort_values(ascending=False).head(3))
    why = ", ".join(f"{reason} ({int(n)} files)" for reason, n in reasons.items() if n)
    raise InputError(
        f"no usable series: {tables.balance.found} file(s) found, none in a labelled "
        f"thin-slice CT series (skipped {tables.balance.skipped}, quarantined "
        f"{tables.balance.quarantined}{': ' + why if why else ''}); see the quarantine and "
        "series tables", reason="no_usable_series")


def merge_tables(known: Mapping[str, pd.DataFrame],
                 new: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The ingestion tables of a data root that already holds `known` after a new drop
    `new` (retraining): scans and ground truth by scan id (a re-delivered scan takes its
    new row), series by series id, quarantine rows once each."""
    keys = {"scans": ["scan_id"], "ground_truth": ["scan_id"], "series": ["series_id"]}
    merged = {}
    for name, frame in new.items():
        earlier = known.get(name)
        if earlier is None or earlier.empty:
            merged[name] = frame
            continue
        both = pd.concat([earlier, frame], ignore_index=True)
        subset = keys.get(name)
        if subset:
            both = both.drop_duplicates(subset=subset, keep="last")
        else:  # rows with nulls: compare them as text
            both = both.loc[~both.astype(str).duplicated()]
        merged[name] = both.sort_values(list(frame.columns[:2]), ignore_index=True,
                                        na_position="last")
    return merged
