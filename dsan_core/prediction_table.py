"""The prediction table contract and its join with the groups and splits tables.

    predictions  scan_id, fold (0-based), branch, set ('val' | 'test'), probability
                 (P(COVID)), model_key. 'val' rows: each TV scan once per branch, the
                 out-of-fold prediction of the fold where it was validation. 'test'
                 rows: each test scan once per fold per branch.
    groups       scan_id, label ('COVID' | 'CAP'), analysis_bin, ensemble_band, ...
                 (`dsan_core.groups.assign_groups`)
    splits       scan_id, patient_id (pseudonymous), ...

A "model" in the evaluation tables is a branch name (`MODEL_NAMES` for display):
the paper's four, `att_ds_nested` (the DS ensemble with weights chosen on the other
folds, val rows only), the untrained baselines (`BASELINES`, not in the paper) and
`shipped` (the fold-averaged DS model `dsan predict` uses, test only; built by the
evaluation, never stored as prediction rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dsan_core.branches import ATT_DS, MODELS
from dsan_core.branches import MODEL_NAMES as _PAPER_NAMES
from dsan_core.errors import InputError
from dsan_core.groups import ANALYSIS_BINS, ENSEMBLE_BANDS, LABEL_COVID, LABELS

#: The DS ensemble scored nested: fold k's weights searched on the other folds.
BRANCH_ATT_DS_NESTED = "att_ds_nested"
#: The fold-averaged DS model (each branch's mean over the fold models, then DS).
SHIPPED = "shipped"
BASELINE_INTENSITY = "base_intensity"
BASELINE_RATIO = "base_ratio"
BASELINE_HAND = "base_hand"
#: Untrained baselines (not in the paper), logistic regressions with the pipeline's folds.
BASELINES: tuple[str, str, str] = (BASELINE_INTENSITY, BASELINE_RATIO, BASELINE_HAND)
#: Every model of the evaluation, in the order of its tables.
EVALUATED: tuple[str, ...] = (*MODELS, BRANCH_ATT_DS_NESTED, SHIPPED, *BASELINES)
MODEL_NAMES: dict[str, str] = {
    **_PAPER_NAMES,
    ATT_DS: "Attention RN34 + DS (all-TV weights)",
    BRANCH_ATT_DS_NESTED: "Attention RN34 + DS (nested weights)",
    SHIPPED: "Shipped: DS of fold-averaged branches",
    BASELINE_INTENSITY: "Baseline: mean lung intensity",
    BASELINE_RATIO: "Baseline: infection ratio",
    BASELINE_HAND: "Baseline: hand features",
}

SET_VAL = "val"
SET_TEST = "test"
PREDICTION_SETS: tuple[str, str] = (SET_VAL, SET_TEST)

PREDICTION_COLUMNS: tuple[str, ...] = ("scan_id", "fold", "branch", "set", "probability",
                                       "model_key")
GROUP_COLUMNS: tuple[str, ...] = ("scan_id", "label", "analysis_bin", "ensemble_band")


def require_columns(df: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    """Raise `InputError` naming the missing columns of `table`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"expected {table} columns {list(columns)}, missing {missing}")


def ordered_models(branches: pd.Series | list[str]) -> list[str]:
    """The distinct branch names in `EVALUATED`'s order (the paper's four first), others
    sorted after them."""
    present = {str(b) for b in branches}
    return [b for b in EVALUATED if b in present] + sorted(present - set(EVALUATED))


def check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """A copy with plain dtypes (scan_id/branch/set/model_key str, fold int, probability
    float), after checking the contract: known sets, P(COVID) in [0, 1], no duplicates."""
    require_columns(predictions, PREDICTION_COLUMNS, "predictions")
    out = predictions.loc[:, list(PREDICTION_COLUMNS)].copy()
    for column in ("scan_id", "branch", "set", "model_key"):
        out[column] = out[column].astype(str)
    bad_set = ~out["set"].isin(PREDICTION_SETS)
    if bad_set.any():
        row = out.loc[bad_set].iloc[0]
        raise InputError(f"expected set in {list(PREDICTION_SETS)}, found {row['set']!r}",
                         scan=row["scan_id"])
    fold = pd.to_numeric(out["fold"], errors="coerce")
    if fold.isna().any() or (fold < 0).any() or (fold != fold.round()).any():
        row = out.loc[fold.isna() | (fold < 0) | (fold != fold.round())].iloc[0]
        raise InputError(f"expected a fold number >= 0, found {row['fold']!r}",
                         scan=row["scan_id"])
    out["fold"] = fold.astype(np.int64)
    prob = pd.to_numeric(out["probability"], errors="coerce")
    outside = prob.isna() | (prob < 0) | (prob > 1)
    if outside.any():
        row = out.loc[outside].iloc[0]
        raise InputError(f"expected probability in [0, 1], found {row['probability']!r}",
                         scan=row["scan_id"])
    out["probability"] = prob.astype(np.float64)
    # A val scan has one out-of-fold prediction per branch; a test scan one per fold model.
    is_val = out["set"] == SET_VAL
    for mask, keys in ((is_val, ["scan_id", "branch"]),
                       (~is_val, ["scan_id", "branch", "fold"])):
        duplicated = out.loc[mask].duplicated(keys, keep=False)
        if duplicated.any():
            row = out.loc[mask].loc[duplicated].iloc[0]
            raise InputError(f"expected one {row['set']} prediction per {', '.join(keys[1:])}, "
                             f"found duplicates (branch {row['branch']}, fold {row['fold']})",
                             scan=row["scan_id"])
    return out


def check_groups(groups: pd.DataFrame) -> pd.DataFrame:
    """Plain-string copy of the groups columns the evaluation uses, after checking them."""
    require_columns(groups, GROUP_COLUMNS, "groups")
    out = groups.loc[:, list(GROUP_COLUMNS)].astype(str)
    for column, allowed in (("label", LABELS), ("analysis_bin", ANALYSIS_BINS),
                            ("ensemble_band", ENSEMBLE_BANDS)):
        bad = ~out[column].isin(allowed)
        if bad.any():
            row = out.loc[bad].iloc[0]
            raise InputError(f"expected {column} in {list(allowed)}, found {row[column]!r}",
                             scan=row["scan_id"])
    if out["scan_id"].duplicated().any():
        scan = out.loc[out["scan_id"].duplicated(), "scan_id"].iloc[0]
        raise InputError("expected one groups row per scan, found several", scan=scan)
    return out


def attach(left: pd.DataFrame, right: pd.DataFrame, table: str) -> pd.DataFrame:
    """`left` with `right`'s columns joined on scan_id; every left scan must be in right."""
    merged = left.merge(right, on="scan_id", how="left", validate="many_to_one",
                        indicator=True)
    missing = merged["_merge"] == "left_only"
    if missing.any():
        scan = str(merged.loc[missing, "scan_id"].iloc[0])
        raise InputError(f"expected every predicted scan in the {table} table, found none",
                         scan=scan)
    return merged.drop(columns="_merge")


def labelled_predictions(predictions: pd.DataFrame, groups: pd.DataFrame,
                         splits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Predictions with label, y (1 = COVID), analysis_bin, ensemble_band and, given
    `splits`, patient_id."""
    out = attach(check_predictions(predictions), check_groups(groups), "groups")
    out["y"] = (out["label"] == LABEL_COVID).astype(np.int64)
    if splits is not None:
        require_columns(splits, ("scan_id", "patient_id"), "splits")
        patients = splits.loc[:, ["scan_id", "patient_id"]].astype(str)
        patients = patients.drop_duplicates("scan_id")
        out = attach(out, patients, "splits")
    return out
