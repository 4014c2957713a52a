"""The pipeline's view of a cohort plan, without DICOM: scans and groups tables as
ingestion and the groups stage would build them, and the split's training folds."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dsan_core.config import PUBLISHED_DEMO_KEY, GroupsConfig, SplitConfig
from dsan_core.dicom.pseudonym import pseudonymise
from dsan_core.groups import SAMPLING_GROUPS, assign_groups
from dsan_core.splits import make_splits
from dsan_core.synthetic import CohortPlan

KEY = PUBLISHED_DEMO_KEY.encode()


def plan_tables(plan: CohortPlan, ratios: Mapping[int, float] | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """scans (pseudonymous ids as ingestion makes them) and groups of the labelled studies.

    Ratios are the plan's targets unless `ratios` (study number -> ratio) says otherwise.
    """
    rows = []
    for study in plan.cohort_studies():
        patient = plan.patient(study.patient_number)
        rows.append({
            "scan_id": pseudonymise("series", study.series_uid(2), KEY),
            "patient_id": pseudonymise("patient", patient.patient_id, KEY),
            "label": study.diagnosis,
            "site": study.site,
            "acquisition_date": pd.Timestamp(study.study_date),
            "infection_ratio": (ratios or {}).get(study.number, study.target_ratio),
            "cohort_set": study.cohort_set,
        })
    scans = pd.DataFrame(rows)
    groups = assign_groups(scans[["scan_id", "label", "infection_ratio"]], GroupsConfig())
    return scans, groups


def split_plan(plan: CohortPlan, split: SplitConfig,
               ratios: Mapping[int, float] | None = None) -> pd.DataFrame:
    """One row per labelled scan: set, fold, label, site, sampling group, cohort set."""
    scans, groups = plan_tables(plan, ratios)
    table = make_splits(scans, groups, split).table
    return (table.merge(groups[["scan_id", "sampling_group", "analysis_bin"]], on="scan_id")
            .merge(scans[["scan_id", "label", "site", "cohort_set"]], on="scan_id"))


def training_group_counts(split_table: pd.DataFrame, n_folds: int) -> list[dict[str, int]]:
    """Scans per sampling group in each training fold (TV minus fold i)."""
    tv = split_table[split_table["set"] == "tv"]
    counts = []
    for fold in range(n_folds):
        train = tv[tv["fold"] != fold]["sampling_group"].astype(str).value_counts()
        counts.append({group: int(train.get(group, 0)) for group in SAMPLING_GROUPS})
    return counts


def weights(counts: Mapping[str, int]) -> tuple[float, float]:
    """W_covid_small and W_cap_large of one training fold."""
    return (counts["covid_large"] / counts["covid_small"],
            counts["cap_small"] / counts["cap_large"])
