"""Untrained baselines (not in the paper): what a scan's own numbers predict, no network.

Features of one scan, from the network input X (the pre-processed CT windowed to [0, 1]
and masked by the lung; (z, y, x)) and the lung mask L on the same grid:

    mean_intensity   mean of X over L
    hist_0 .. hist_{b-1}  share of L's voxels with X in each of b equal-width bins of
                     [0, 1] (`calibration.probability_bins`: the last bin holds X = 1)

and, from the groups table, the segmenter's infection ratio (whatever method made it):

    log_ratio        log10(infection_ratio + 1e-4)

Three baselines, each a standardised logistic regression (scikit-learn's defaults: L2,
C = 1) fit with the pipeline's own folds:

    base_intensity   mean_intensity alone
    base_ratio       log_ratio alone (a monotone map of the ratio: its AUC is the ratio's)
    base_hand        mean_intensity, log_ratio and the histogram

A one-feature regression still learns the feature's direction, and that is learnt on
training folds only. The predictions follow the predictions table's contract:

    val rows     fold k's TV scans, scored by the model fit on the TV scans of the
                 other folds (out-of-fold, like the networks' validation predictions)
    test rows    per fold k, the model fit on the TV scans outside fold k scores every
                 test scan: test metrics are mean ± std over fold models as for the
                 networks, and their mean per scan is the fold-averaged baseline
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dsan_core.errors import InputError
from dsan_core.evaluation.calibration import probability_bins
from dsan_core.groups import LABEL_COVID
from dsan_core.prediction_table import (
    BASELINE_HAND,
    BASELINE_INTENSITY,
    BASELINE_RATIO,
    PREDICTION_COLUMNS,
    SET_TEST,
    SET_VAL,
    require_columns,
)

MEAN_INTENSITY = "mean_intensity"
LOG_RATIO = "log_ratio"
RATIO_FLOOR = 1e-4
FEATURE_COLUMNS: tuple[str, ...] = ("scan_id", "feature", "value")


@dataclass(frozen=True)
class FeatureCase:
    """One scan's network input and lung mask, loaded on demand ((z, y, x), one grid)."""

    scan_id: str
    image: Callable[[], np.ndarray]
    lung: Callable[[], np.ndarray]


def histogram_names(bins: int) -> list[str]:
    return [f"hist_{i}" for i in range(bins)]


def lung_features(image: np.ndarray, lung: np.ndarray, bins: int,
                  scan: str | None = None) -> dict[str, float]:
    """mean_intensity and the histogram shares of X inside the lung (module docstring)."""
    x = np.asarray(image, dtype=np.float64)
    inside = np.asarray(lung) != 0
    if x.shape != inside.shape:
        raise InputError(f"expected the input and lung mask in one shape, found {x.shape} and "
                         f"{inside.shape}", scan=scan)
    values = x[inside]
    if values.size == 0:
        raise InputError("expected a lung mask with voxels, found an empty one", scan=scan)
    if not np.isfinite(values).all():
        raise InputError("expected finite input values inside the lung", scan=scan)
    shares = np.bincount(probability_bins(np.clip(values, 0.0, 1.0), bins),
                         minlength=bins) / values.size
    return {MEAN_INTENSITY: float(values.mean()),
            **{name: float(v) for name, v in zip(histogram_names(bins), shares, strict=True)}}


def feature_table(cases: Iterable[FeatureCase], bins: int) -> pd.DataFrame:
    """The long `baseline_features` table (scan_id, feature, value) of the image features."""
    records = [{"scan_id": case.scan_id, "feature": name, "value": value}
               for case in cases
               for name, value in lung_features(case.image(), case.lung(), bins,
                                                case.scan_id).items()]
    return pd.DataFrame.from_records(records, columns=list(FEATURE_COLUMNS))


def baseline_features(bins: int) -> dict[str, list[str]]:
    """Each baseline's feature columns."""
    return {BASELINE_INTENSITY: [MEAN_INTENSITY], BASELINE_RATIO: [LOG_RATIO],
            BASELINE_HAND: [MEAN_INTENSITY, LOG_RATIO, *histogram_names(bins)]}


def _design(features: pd.DataFrame, groups: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """One row per split scan with features: the wide features, log_ratio, y, set, fold."""
    require_columns(features, FEATURE_COLUMNS, "baseline features")
    require_columns(groups, ("scan_id", "label", "infection_ratio"), "groups")
    require_columns(splits, ("scan_id", "set", "fold"), "splits")
    wide = features.pivot(index="scan_id", columns="feature", values="value")
    wide.columns = [str(c) for c in wide.columns]
    scans = splits[["scan_id", "set", "fold"]].astype({"scan_id": str}).merge(
        groups[["scan_id", "label", "infection_ratio"]].astype({"scan_id": str}),
        on="scan_id", how="left")
    unlabelled = scans["label"].isna()
    if unlabelled.any():
        raise InputError("expected every split scan in the groups table",
                         scan=str(scans.loc[unlabelled, "scan_id"].iloc[0]))
    # A scan without features (not pre-processed) has no network prediction either.
    design = scans.merge(wide, left_on="scan_id", right_index=True, how="inner")
    ratio = pd.to_numeric(design["infection_ratio"], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(ratio).all():
        scan = str(design.loc[~np.isfinite(ratio), "scan_id"].iloc[0])
        raise InputError("expected a finite infection ratio", scan=scan)
    design[LOG_RATIO] = np.log10(np.clip(ratio, 0.0, None) + RATIO_FLOOR)
    design["y"] = (design["label"] == LABEL_COVID).astype(np.int64)
    return design.sort_values("scan_id", ignore_index=True)


def _fit(rows: pd.DataFrame, columns: Sequence[str], fold: int) -> object:
    y = rows["y"].to_numpy()
    if y.min() == y.max():
        raise InputError(f"a baseline needs COVID and CAP scans outside fold {fold}, found "
                         f"{int(y.sum())} COVID of {y.size}")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(rows[list(columns)].to_numpy(np.float64), y)
    return model


def baseline_predictions(features: pd.DataFrame, groups: pd.DataFrame, splits: pd.DataFrame,
                         bins: int) -> pd.DataFrame:
    """Prediction rows (`PREDICTION_COLUMNS`) of every baseline (module docstring) from the
    long image features, the groups table (label, infection_ratio) and the splits table
    (set 'tv' with fold k | 'test')."""
    design = _design(features, groups, splits)
    tv = design.loc[design["set"] == "tv"]
    test = design.loc[design["set"] == SET_TEST]
    folds = sorted(int(f) for f in tv["fold"].dropna().unique())
    if len(folds) < 2:
        raise InputError(f"the baselines need at least 2 TV folds, found {folds}")
    rows: list[pd.DataFrame] = []
    for model_name, columns in baseline_features(bins).items():
        for fold in folds:
            inner = tv["fold"] == fold
            model = _fit(tv.loc[~inner], columns, fold)
            for set_name, scored in ((SET_VAL, tv.loc[inner]), (SET_TEST, test)):
                if scored.empty:
                    continue
                p = model.predict_proba(  # type: ignore[attr-defined]
                    scored[list(columns)].to_numpy(np.float64))[:, 1]
                rows.append(pd.DataFrame({
                    "scan_id": scored["scan_id"].to_numpy(), "fold": fold,
                    "branch": model_name, "set": set_name, "probability": p,
                    "model_key": f"{model_name}-f{fold}"}))
    out = pd.concat(rows, ignore_index=True)[list(PREDICTION_COLUMNS)]
    out["fold"] = out["fold"].astype(np.int64)
    return out.sort_values(["set", "branch", "fold", "scan_id"], ignore_index=True)


@dataclass(frozen=True)
class Baselines:
    """The long image features and the baselines' prediction rows."""

    features: pd.DataFrame
    predictions: pd.DataFrame


def compute_baselines(cases: Iterable[FeatureCase], groups: pd.DataFrame,
                      splits: pd.DataFrame, bins: int) -> Baselines:
    """`feature_table` of the cases, then `baseline_predictions` from it."""
    features = feature_table(cases, bins)
    return Baselines(features, baseline_predictions(features, groups, splits, bins))
