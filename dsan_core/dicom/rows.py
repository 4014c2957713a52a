"""Rows of the ingestion tables, built from the in-memory plan. Only pseudonyms,
codes and numbers leave this module: never a raw UID, patient id or path."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dsan_core.dicom.demographics import parse_age_years, parse_dicom_date, parse_sex
from dsan_core.dicom.geometry import GeometryReport
from dsan_core.dicom.index import FileFailure
from dsan_core.dicom.labels import LabelsReconciliation
from dsan_core.dicom.pseudonym import pseudonymise
from dsan_core.dicom.series import SeriesPlan

#: Quarantine reason of a refused ground-truth mask, by its MaskError reason.
MASK_REASONS = {"geometry": "mask_geometry_mismatch", "values": "mask_not_binary"}


@dataclass(frozen=True)
class DecodedSeries:
    """A chosen series whose volume was written: its scan id (pseudonym), where the
    volume is (relative to the data root) and its hash, shape (z, y, x), spacing (x, y, z)."""

    scan_id: str
    volume_path: str
    volume_hash: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]


def _records(frame: pd.DataFrame) -> Iterator[Any]:
    """Rows as attribute tuples (typed Any: columns are known by name, not to mypy)."""
    return iter(frame.itertuples(index=False))


def _maybe(kind: str, raw: Any, key: bytes) -> str | None:
    text = "" if raw is None or (isinstance(raw, float) and pd.isna(raw)) else str(raw)
    return pseudonymise(kind, text, key) if text else None


def scan_row(first: pd.Series, geometry: GeometryReport | None, label: Any,
             decoded: DecodedSeries, source_hash: str, key: bytes) -> dict[str, Any]:
    """One `scans` row: `first` is the header record of one file of the chosen series."""
    patient_raw = str(first["patient_id"] or "") or str(label.patient_id)
    acquired = label.acquisition_date
    if acquired is None or pd.isna(acquired):
        acquired = (parse_dicom_date(first["acquisition_date"])
                    or parse_dicom_date(first["study_date"]))
    shape, spacing = decoded.shape, decoded.spacing
    thickness = first["slice_thickness"]
    return {
        "scan_id": decoded.scan_id,
        "patient_id": pseudonymise("patient", patient_raw, key),
        "study_id": pseudonymise("study", str(label.study_instance_uid), key),
        "series_id": decoded.scan_id,
        "label": label.label,
        "site": str(label.site),
        "acquisition_date": acquired,
        "manufacturer": str(first["manufacturer"] or ""),
        "age_years": parse_age_years(first["patient_age"]),
        "sex": parse_sex(first["patient_sex"]),
        "n_slices": int(shape[0]),
        "shape_z": int(shape[0]),
        "shape_y": int(shape[1]),
        "shape_x": int(shape[2]),
        "spacing_x": float(spacing[0]),
        "spacing_y": float(spacing[1]),
        "spacing_z": float(spacing[2]),
        "slice_thickness_mm": None if pd.isna(thickness) else float(thickness),
        "spacing_spread": None if geometry is None else float(geometry.spacing_spread),
        "gantry_tilt_deg": None if geometry is None else float(geometry.tilt_deg),
        "geometry_flags": "" if geometry is None else ",".join(sorted(set(geometry.flags))),
        "volume_path": decoded.volume_path,
        "volume_hash": decoded.volume_hash,
        "source_hash": source_hash,
        "label_split": _label_split(label),
    }


def _label_split(label: Any) -> str | None:
    value = getattr(label, "split", None)
    if value is None or (isinstance(value, float) and pd.isna(value)) or str(value) == "":
        return None
    return str(value).strip().lower()


def series_rows(plan: SeriesPlan, series_hash: dict[str, str], key: bytes,
                ingested: Collection[str], decode_failures: dict[str, str]) -> pd.DataFrame:
    """One `series` row per series of the export, with why it was (not) chosen;
    `ingested`: UIDs of the series whose volume exists."""
    rows = []
    for d in _records(plan.decisions):
        uid = str(d.series_instance_uid)
        status, reason, message = str(d.status), str(d.reason), str(d.message)
        if status == "chosen" and uid in decode_failures:
            status, reason, message = "rejected", "decode_failed", decode_failures[uid]
        elif status == "chosen" and uid not in ingested:
            status, reason, message = "unlabelled", "dicom_without_label", "study has no label"
        rows.append({
            "series_id": pseudonymise("series", uid, key),
            "study_id": pseudonymise("study", str(d.study_instance_uid), key),
            "patient_id": _maybe("patient", d.patient_id, key),
            "status": status,
            "reason": reason,
            "message": message,
            "modality": _modality(d),
            "n_files": int(d.n_files),
            "slice_thickness_mm": None if pd.isna(d.slice_thickness) else float(d.slice_thickness),
            "source_hash": series_hash.get(uid, ""),
        })
    frame = pd.DataFrame(rows, columns=[
        "series_id", "study_id", "patient_id", "status", "reason", "message", "modality",
        "n_files", "slice_thickness_mm", "source_hash"])
    return frame.sort_values(["study_id", "series_id"], ignore_index=True)


def _modality(decision: Any) -> str:
    return str(getattr(decision, "modality", "") or "")


def quarantine_rows(plan: SeriesPlan, file_failures: Sequence[FileFailure],
                    file_hash: Mapping[str, str | None], labels: LabelsReconciliation,
                    series_hash: dict[str, str], key: bytes, decode_failures: dict[str, str],
                    mask_failures: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """One `quarantine` row per unusable file, series, study, label row or mask, with
    its reason; `file_hash`: content hash by raw path (memory only)."""
    rows: list[dict[str, Any]] = []
    for failure in file_failures:
        rows.append({"kind": "file", "reason": failure.reason, "message": failure.message,
                     "n_files": 1, "study_id": None, "series_id": None,
                     "source_hash": file_hash.get(str(failure.path)) or ""})
    chosen_files = {}
    for d in _records(plan.decisions):
        uid = str(d.series_instance_uid)
        if d.status == "chosen":
            chosen_files[str(d.study_instance_uid)] = (uid, int(d.n_files))
        if d.status == "rejected" or uid in decode_failures:
            rows.append({
                "kind": "series",
                "reason": "decode_failed" if uid in decode_failures else str(d.reason),
                "message": decode_failures.get(uid, str(d.message)),
                "n_files": int(d.n_files),
                "study_id": pseudonymise("study", str(d.study_instance_uid), key),
                "series_id": pseudonymise("series", uid, key),
                "source_hash": series_hash.get(uid, ""),
            })
    for s in _records(plan.studies):
        if str(s.chosen_series_uid) == "":
            rows.append({"kind": "study", "reason": str(s.reason), "message": str(s.message),
                         "n_files": 0, "study_id": pseudonymise("study", str(s.study_instance_uid),
                                                                key),
                         "series_id": None, "source_hash": ""})
    for issue in _records(labels.issues):
        study_uid = str(issue.study_instance_uid or "")
        n_files, series_id, source = 0, None, ""
        kind = "label"
        if issue.outcome == "dicom_without_label":
            kind = "study"
            if study_uid in chosen_files and chosen_files[study_uid][0] not in decode_failures:
                uid, n_files = chosen_files[study_uid]
                series_id, source = pseudonymise("series", uid, key), series_hash.get(uid, "")
        number = issue.row_number
        where = "" if number is None or pd.isna(number) else f"labels row {int(number)}: "
        rows.append({"kind": kind, "reason": str(issue.outcome),
                     "message": where + str(issue.message), "n_files": n_files,
                     "study_id": pseudonymise("study", study_uid, key) if study_uid else None,
                     "series_id": series_id, "source_hash": source})
    for scan_id, (reason, message) in mask_failures.items():
        rows.append({"kind": "mask", "reason": MASK_REASONS.get(reason, f"mask_{reason}"),
                     "message": message,
                     "n_files": 0, "study_id": None, "series_id": scan_id, "source_hash": ""})
    frame = pd.DataFrame(rows, columns=["kind", "reason", "message", "n_files", "study_id",
                                        "series_id", "source_hash"])
    return frame.sort_values(["kind", "reason", "study_id", "series_id", "source_hash"],
                             ignore_index=True, na_position="last")
