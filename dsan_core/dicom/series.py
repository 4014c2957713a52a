"""Choose one thin axial CT series per study, and record why every other was not chosen.

Candidates are CT, single-frame, ORIGINAL/PRIMARY, not localizers, axial within
`axial_tolerance_deg`, thinner than `max_slice_thickness_mm` and with at least
`min_slices` files. They are ranked by slice count (ties: thinner, then lower
series number). The best candidate whose geometry passes `check_geometry` is
chosen; candidates ranked above it are "rejected" with their geometry reason,
those below it are "skipped" as `fewer_slices`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dsan_core.config import IngestConfig
from dsan_core.dicom import reasons
from dsan_core.dicom.geometry import GeometryReport, check_geometry, slice_normal
from dsan_core.dicom.index import IOP_COLUMNS

_LOCALIZER_WORDS = ("LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM", "PILOT")

#: Columns of `SeriesPlan.decisions`.
DECISION_COLUMNS = (
    "patient_id", "study_instance_uid", "series_instance_uid", "series_number", "status",
    "reason", "message", "n_files", "slice_thickness", "rank",
)
#: Columns of `SeriesPlan.studies`.
STUDY_COLUMNS = (
    "patient_id", "study_instance_uid", "chosen_series_uid", "reason", "message", "n_series",
)


@dataclass(frozen=True)
class SeriesPlan:
    """The result of `choose_series` (raw UIDs: in memory only, pseudonymise before writing).

    `studies`: one row per study (STUDY_COLUMNS); `chosen_series_uid` is "" when none.
    `decisions`: one row per series (DECISION_COLUMNS); status chosen|skipped|rejected.
    `geometry`: the report of every series that was geometry-checked, by series UID.
    `slice_paths`: the chosen series' files in slice order, by series UID.
    """

    studies: pd.DataFrame
    decisions: pd.DataFrame
    geometry: dict[str, GeometryReport] = field(default_factory=dict)
    slice_paths: dict[str, list[Path]] = field(default_factory=dict)


def _first_text(series: pd.DataFrame, column: str) -> str:
    values = series[column].dropna().astype(str)
    return str(values.mode().iloc[0]) if len(values) else ""


def _skip_reason(series: pd.DataFrame, config: IngestConfig) -> tuple[str, str] | None:
    """(reason, message) for a series that cannot be a candidate, else None."""
    modality = _first_text(series, "modality")
    if modality != "CT":
        return reasons.NOT_CT, f"expected modality CT, found '{modality or 'none'}'"
    if (series["number_of_frames"] > 1).any():
        return reasons.MULTIFRAME, "multi-frame (enhanced) images are not supported"
    image_type = _first_text(series, "image_type")
    parts = image_type.split("\\")
    description = _first_text(series, "series_description").upper()
    if "LOCALIZER" in parts or any(word in description for word in _LOCALIZER_WORDS):
        return reasons.LOCALIZER, "a localizer / scout series"
    if image_type and parts[:2] != ["ORIGINAL", "PRIMARY"]:
        return reasons.DERIVED, f"expected ORIGINAL\\PRIMARY, found {'/'.join(parts[:2])}"
    orientation = series[list(IOP_COLUMNS)].to_numpy(dtype=float)
    if np.isnan(orientation).any():
        return reasons.MISSING_GEOMETRY, "expected ImageOrientationPatient on every slice"
    normal = slice_normal(orientation[0])
    angle = float(np.degrees(np.arccos(min(1.0, abs(float(normal[2]))))))
    if angle > config.axial_tolerance_deg:
        return reasons.NON_AXIAL, (
            f"expected axial (normal within {config.axial_tolerance_deg:.1f} deg of z), "
            f"found {angle:.1f} deg")
    thickness = float(series["slice_thickness"].median())
    if not np.isnan(thickness) and thickness >= config.max_slice_thickness_mm:
        return reasons.THICK, (
            f"expected slice thickness < {config.max_slice_thickness_mm:g} mm, "
            f"found {thickness:g} mm")
    if len(series) < config.min_slices:
        return reasons.TOO_FEW_SLICES, (
            f"expected at least {config.min_slices} slices, found {len(series)}")
    return None


def _decision(series: pd.DataFrame, status: str, reason: str, message: str,
              rank: int | None) -> dict[str, object]:
    number = series["series_number"].dropna()
    return {
        "patient_id": _first_text(series, "patient_id"),
        "study_instance_uid": str(series["study_instance_uid"].iloc[0]),
        "series_instance_uid": str(series["series_instance_uid"].iloc[0]),
        "series_number": int(number.iloc[0]) if len(number) else None,
        "status": status,
        "reason": reason,
        "message": message,
        "n_files": len(series),
        "slice_thickness": float(series["slice_thickness"].median()),
        "rank": rank,
    }


def choose_series(records: pd.DataFrame, config: IngestConfig) -> SeriesPlan:
    """Pick one series per study from the `index_headers` DataFrame (see module docstring)."""
    decisions: list[dict[str, object]] = []
    studies: list[dict[str, object]] = []
    geometry: dict[str, GeometryReport] = {}
    slice_paths: dict[str, list[Path]] = {}
    for study_uid, study in records.groupby("study_instance_uid", sort=True):
        candidates: list[pd.DataFrame] = []
        series_groups = list(study.groupby("series_instance_uid", sort=True))
        for _series_uid, series in series_groups:
            skip = _skip_reason(series, config)
            if skip is None:
                candidates.append(series)
            else:
                decisions.append(_decision(series, reasons.SKIPPED, skip[0], skip[1], None))
        candidates.sort(key=_rank_key)
        chosen: pd.DataFrame | None = None
        rejected = 0
        for rank, series in enumerate(candidates, start=1):
            series_uid = str(series["series_instance_uid"].iloc[0])
            if chosen is not None:
                decisions.append(_decision(
                    series, reasons.SKIPPED, reasons.FEWER_SLICES,
                    f"{len(series)} files; the chosen series has {len(chosen)}", rank))
                continue
            report = check_geometry(series, config)
            geometry[series_uid] = report
            if report.ok:
                chosen = series
                slice_paths[series_uid] = [Path(series.loc[i, "path"]) for i in report.sorted_index]
                decisions.append(_decision(series, reasons.CHOSEN, reasons.CHOSEN,
                                           _chosen_message(report, rejected), rank))
            else:
                rejected += 1
                decisions.append(_decision(series, reasons.REJECTED, str(report.reason),
                                           report.message, rank))
        studies.append(_study_row(study, str(study_uid), chosen, len(candidates),
                                  len(series_groups)))
    return SeriesPlan(
        studies=pd.DataFrame(studies, columns=list(STUDY_COLUMNS)),
        decisions=pd.DataFrame(decisions, columns=list(DECISION_COLUMNS)),
        geometry=geometry,
        slice_paths=slice_paths,
    )


def _rank_key(series: pd.DataFrame) -> tuple[float, float, float, str]:
    thickness = float(series["slice_thickness"].median())
    number = series["series_number"].dropna()
    return (
        -len(series),
        thickness if not np.isnan(thickness) else np.inf,
        float(number.iloc[0]) if len(number) else np.inf,
        str(series["series_instance_uid"].iloc[0]),
    )


def _chosen_message(report: GeometryReport, rejected: int) -> str:
    text = (f"{report.n_slices} slices, spacing {report.spacing_mm:.3f} mm, "
            f"tilt {report.tilt_deg:.2f} deg")
    if rejected:
        text += f"; fallback after {rejected} rejected series"
    if report.flags:
        text += f"; flags: {', '.join(report.flags)}"
    return text


def _study_row(study: pd.DataFrame, study_uid: str, chosen: pd.DataFrame | None,
               n_candidates: int, n_series: int) -> dict[str, object]:
    if chosen is not None:
        reason, message = reasons.CHOSEN, "one series chosen"
        chosen_uid = str(chosen["series_instance_uid"].iloc[0])
    elif n_candidates == 0:
        reason, message, chosen_uid = (reasons.NO_CANDIDATE_SERIES,
                                       "no thin original axial CT series", "")
    else:
        reason, message, chosen_uid = (reasons.ALL_CANDIDATES_REJECTED,
                                       f"all {n_candidates} candidate series failed geometry", "")
    return {
        "patient_id": _first_text(study, "patient_id"),
        "study_instance_uid": study_uid,
        "chosen_series_uid": chosen_uid,
        "reason": reason,
        "message": message,
        "n_series": n_series,
    }
