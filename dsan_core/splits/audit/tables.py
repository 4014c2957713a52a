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

from dsan_core.errors import InputError
from dsan_core.groups import LABELS, SAMPLING_GROUPS, size_balanced_weights
from dsan_core.splits.partitions import partition_names

MISSING = "(missing)"
TV_TOTAL = "tv"
ALL_TOTAL = "all"
PartitionArray = npt.NDArray[np.int64]


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
    for label in LABELS:
        if label not in table.columns:
            table[label] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        table["covid_fraction"] = (table["COVID"] / table["scans"]).round(3)
    return table


def _sex_codes(work: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Per row: 0 for "F", 1 for "M" (any case), 2 otherwise or missing."""
    if "sex" not in work.columns:
        return np.full(len(work), 2, dtype=np.int64)
    sex = work["sex"]
    if isinstance(sex.dtype, pd.CategoricalDtype):  # decide once per category
        names = pd.Series(sex.cat.categories).astype("string").str.upper()
        per_name = np.append(np.select([(names == "F").fillna(False).to_numpy(bool),
                                        (names == "M").fillna(False).to_numpy(bool)], [0, 1], 2),
                             2)  # code -1 (missing) -> 2
        coded: npt.NDArray[np.int64] = per_name[sex.cat.codes.to_numpy()].astype(np.int64)
        return coded
    upper = sex.astype("string").str.upper()
    return np.select([(upper == "F").fillna(False).to_numpy(bool),
                      (upper == "M").fillna(False).to_numpy(bool)], [0, 1], 2).astype(np.int64)


def _scan_order(work: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Per row: a distinct number, smaller for an earlier acquisition date (missing dates
    last), then for a lower row."""
    n = len(work)
    rows = np.arange(n, dtype=np.int64)
    if "acquisition_date" not in work.columns:
        return rows
    dates = pd.to_datetime(work["acquisition_date"], errors="coerce").to_numpy()
    if dates.dtype.kind != "M":
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(dates, kind="stable")] = rows
        return rank
    day_rank, _ = pd.factorize(dates.view(np.int64), sort=True)
    day_rank = day_rank.astype(np.int64)
    day_rank[np.isnat(dates)] = int(day_rank.max()) + 1 if n else 0
    ordered: npt.NDArray[np.int64] = day_rank * n + rows
    return ordered


def _first_rows(group: npt.NDArray[np.int64], n_groups: int, order: npt.NDArray[np.int64],
                n_rows: int) -> npt.NDArray[np.int64]:
    """Per group (codes 0..n_groups-1) that occurs: the row with the smallest `order`
    (`_scan_order` of a table of `n_rows` rows, at the rows of `group`)."""
    none = np.iinfo(np.int64).max
    first = np.full(n_groups, none, dtype=np.int64)
    np.minimum.at(first, group, order)
    rows: npt.NDArray[np.int64] = first[first != none] % max(n_rows, 1)
    return rows


def demographics_table(partition: PartitionArray, n_folds: int, work: pd.DataFrame,
                       patient_codes: npt.NDArray[np.intp]) -> pd.DataFrame:
    """Per partition: patients, age median / Q1 / Q3 (years) and sex counts, per patient."""
    n_parts = n_folds + 1
    # Shifted by one: a missing patient (code -1) gets a group code too.
    patient = patient_codes.astype(np.int64) + 1
    age = (pd.to_numeric(work["age_years"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
           if "age_years" in work.columns else np.full(len(work), np.nan))
    sex = _sex_codes(work)
    order = _scan_order(work)
    n_patients = int(patient.max()) + 1 if len(patient) else 1
    n = len(order)
    firsts = _first_rows(partition * n_patients + patient, n_parts * n_patients, order, n)
    tv_firsts = firsts[partition[firsts] < n_folds]
    tv = _first_rows(patient[tv_firsts], n_patients, order[tv_firsts], n)
    every = _first_rows(patient, n_patients, order, n)
    rows = np.concatenate([firsts, tv, every])
    stacked = pd.DataFrame({
        "part": np.concatenate([partition[firsts], np.full(len(tv), n_parts, dtype=np.int64),
                                np.full(len(every), n_parts + 1, dtype=np.int64)]),
        "age": age[rows],
        "sex": sex[rows],
    })
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
    from scipy.stats import chi2_contingency

    rows = []
    for name, source in (("label x fold", "overview"), ("analysis_bin x fold", "analysis_bins")):
        if source not in tables:
            continue
        counts = tables[source].iloc[:n_folds]
        if source == "overview":
            counts = counts[list(LABELS)]
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
