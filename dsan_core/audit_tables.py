"""Distribution, sampler-weight and balance tables of a split audit.

Rows of the distribution tables are the partitions "fold 0" .. "fold k-1", "test",
then the totals "tv" (all folds) and "all". Partition codes: fold i -> i, test -> k.
Counts are scans unless a column says patients. Demographics are per patient,
taken from the patient's earliest scan.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import chi2_contingency

from dsan_core.errors import InputError
from dsan_core.samplers import SAMPLING_GROUPS, size_balanced_weights

MISSING = "(missing)"
TV_TOTAL = "tv"
ALL_TOTAL = "all"
PartitionArray = npt.NDArray[np.int64]


def partition_names(n_folds: int) -> list[str]:
    """Names of partition codes 0..k: "fold 0" .. "fold k-1", "test"."""
    return [f"fold {fold}" for fold in range(n_folds)] + ["test"]


def _with_totals(counts: npt.NDArray[np.int64], n_folds: int, columns: list[str]) -> pd.DataFrame:
    rows = np.vstack([counts, counts[:n_folds].sum(axis=0), counts.sum(axis=0)])
    index = partition_names(n_folds) + [TV_TOTAL, ALL_TOTAL]
    return pd.DataFrame(rows, index=pd.Index(index, name="partition"), columns=columns)


def count_table(partition: PartitionArray, n_folds: int, values: pd.Series) -> pd.DataFrame:
    """Scans per partition (rows) and value of `values` (columns, sorted; nulls -> "(missing)")."""
    codes, uniques = pd.factorize(values, sort=True)
    columns = [str(value) for value in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(uniques), codes)
        columns.append(MISSING)
    n_parts = n_folds + 1
    width = max(len(columns), 1)
    flat = np.bincount(partition * width + codes, minlength=n_parts * width)
    return _with_totals(flat.reshape(n_parts, width)[:, : len(columns)], n_folds, columns)


def _unique_patients(partition: PartitionArray, patient_codes: npt.NDArray[np.intp],
                     n_folds: int) -> list[int]:
    n_parts = n_folds + 1
    n_patients = int(patient_codes.max()) + 1 if len(patient_codes) else 0
    seen = np.bincount(patient_codes.astype(np.int64) * n_parts + partition,
                       minlength=n_patients * n_parts).reshape(n_patients, n_parts) > 0
    per_part = seen.sum(axis=0).tolist()
    return [*per_part, int(seen[:, :n_folds].any(axis=1).sum()), int(seen.any(axis=1).sum())]


def overview_table(partition: PartitionArray, n_folds: int, patient_codes: npt.NDArray[np.intp],
                   labels: pd.Series) -> pd.DataFrame:
    """Scans, patients and label counts per partition."""
    table = count_table(partition, n_folds, labels)
    table.insert(0, "patients", _unique_patients(partition, patient_codes, n_folds))
    table.insert(0, "scans", table.drop(columns="patients").sum(axis=1))
    for label in ("COVID", "CAP"):
        if label not in table.columns:
            table[label] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        table["covid_fraction"] = (table["COVID"] / table["scans"]).round(3)
    return table


def demographics_table(partition: PartitionArray, n_folds: int, work: pd.DataFrame,
                       patient_codes: npt.NDArray[np.intp]) -> pd.DataFrame:
    """Per partition: patients, age median / Q1 / Q3 (years) and sex counts, per patient."""
    n_parts = n_folds + 1
    frame = pd.DataFrame({"part": partition,
                          "patient": patient_codes.astype(np.int64)})
    frame["age"] = (pd.to_numeric(work["age_years"], errors="coerce").to_numpy(np.float64,
                                                                               na_value=np.nan)
                    if "age_years" in work.columns else np.nan)
    sex = (work["sex"].astype("string").str.upper() if "sex" in work.columns
           else pd.Series(pd.NA, index=work.index, dtype="string"))
    frame["sex"] = np.select([(sex == "F").fillna(False).to_numpy(bool),
                              (sex == "M").fillna(False).to_numpy(bool)], [0, 1], 2)
    if "acquisition_date" in work.columns:
        dates = pd.to_datetime(work["acquisition_date"], errors="coerce")
        frame = frame.iloc[np.argsort(dates.to_numpy(), kind="stable")]
    n_patients = int(patient_codes.max()) + 1 if len(patient_codes) else 1
    firsts = frame[~(frame["part"] * n_patients + frame["patient"]).duplicated()]
    tv = firsts[firsts["part"] < n_folds]
    tv = tv[~tv["patient"].duplicated()].assign(part=n_parts)
    every = frame[~frame["patient"].duplicated()].assign(part=n_parts + 1)
    stacked = pd.concat([firsts, tv, every], ignore_index=True)
    names = partition_names(n_folds) + [TV_TOTAL, ALL_TOTAL]
    grouped = stacked.groupby("part")
    table = pd.DataFrame({
        "patients": grouped.size(),
        "age_median": grouped["age"].median(),
        "age_q1": grouped["age"].quantile(0.25),
        "age_q3": grouped["age"].quantile(0.75),
        "age_known": grouped["age"].count(),
    }).reindex(range(len(names)))
    sexes = np.bincount(stacked["part"].to_numpy() * 3 + stacked["sex"].to_numpy(),
                        minlength=len(names) * 3).reshape(len(names), 3)
    table["patients"] = table["patients"].fillna(0).astype(np.int64)
    table["age_known"] = table["age_known"].fillna(0).astype(np.int64)
    for column, value in enumerate(("F", "M", "unknown")):
        table[value] = sexes[:, column]
    table.index = pd.Index(names, name="partition")
    return table


def sampler_weight_table(groups: pd.DataFrame, n_folds: int, min_group_scans: int
                         ) -> tuple[pd.DataFrame, list[str]]:
    """Size-balanced weights W per training fold (TV minus fold i), with warnings.

    `groups` is `count_table(..., sampling_group)`; a training fold with a group
    below `min_group_scans` scans gets a warning, an empty group also W = NaN.
    """
    tv_total = groups.loc[TV_TOTAL]
    rows, warnings = [], []
    for fold in range(n_folds):
        counts = {g: int(tv_total.get(g, 0) - groups.iloc[fold].get(g, 0)) for g in SAMPLING_GROUPS}
        row: dict[str, float] = {f"N_{g}": float(n) for g, n in counts.items()}
        try:
            weights = size_balanced_weights(counts)
        except InputError:
            weights = {g: float("nan") for g in SAMPLING_GROUPS}
        row.update({f"W_{g}": round(w, 4) for g, w in weights.items()})
        rows.append(row)
        small = [f"{g}={n}" for g, n in counts.items() if n < min_group_scans]
        if small:
            warnings.append(f"training fold {fold} (TV minus fold {fold}) has fewer than "
                            f"{min_group_scans} scans in sampling group(s): {', '.join(small)}; "
                            "the SS branch needs all four groups")
    index = pd.Index([f"train fold {fold}" for fold in range(n_folds)], name="training_set")
    return pd.DataFrame(rows, index=index), warnings


def balance_table(tables: dict[str, pd.DataFrame], n_folds: int) -> pd.DataFrame:
    """Chi-square tests of independence between fold and label / analysis bin (TV only)."""
    rows = []
    for name, source in (("label x fold", "overview"), ("analysis_bin x fold", "analysis_bins")):
        if source not in tables:
            continue
        counts = tables[source].iloc[:n_folds]
        if source == "overview":
            counts = counts[["COVID", "CAP"]]
        observed = counts.to_numpy(dtype=np.float64)
        observed = observed[observed.sum(axis=1) > 0][:, observed.sum(axis=0) > 0]
        if observed.shape[0] < 2 or observed.shape[1] < 2:
            rows.append({"test": name, "chi2": np.nan, "dof": 0, "p_value": np.nan,
                         "note": "fewer than two non-empty folds or categories"})
            continue
        result = chi2_contingency(observed)
        rows.append({"test": name, "chi2": round(float(result.statistic), 4),
                     "dof": int(result.dof), "p_value": float(result.pvalue), "note": ""})
    return pd.DataFrame(rows, columns=["test", "chi2", "dof", "p_value", "note"])
