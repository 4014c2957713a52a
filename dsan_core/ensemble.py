"""Dual-sampling (DS) ensemble and its weight search (METHOD.md "Ensemble").

    P_DS = w_band * P_US + (1 - w_band) * P_SS      US = att_us, SS = att_ss

with w_band = w_extreme or w_middle by the scan's ensemble band
(`dsan_core.groups`). The search evaluates every pair (w_extreme, w_middle) of the
grid {0, step, ..., 1}^2 on the TV OUT-OF-FOLD predictions only (rows with set
'val'); test rows are dropped before anything else, so they cannot change the result.

Vectorisation: the bands are disjoint sets of scans, so a band's scores depend on its
own weight only. The pooled Mann-Whitney count splits into within-extreme pairs (a
function of w_extreme), within-middle pairs (of w_middle) and cross-band pairs, which
are counted for the whole grid with one sorted search per weight value. Thresholded
objectives add the per-band confusion counts. Every objective is a ratio of exact
counts, so equal values on the grid are exactly equal floats.

Nested scoring (`nested_ensemble`): the pooled out-of-fold score at weights searched
on those same predictions is in-sample. For each validation fold k the search runs on
the other folds' val rows only and its weights score fold k's; the union over k is
the `att_ds_nested` prediction set, whose TV metrics involve no double use. The final
weights (the shipped model's, and every `att_ds` test row's) still come from all of TV.

`shipped_predictions` is the model `dsan predict` ships, on the test scans: each
branch's P averaged over its fold models, then DS (`dsan_core.prediction`'s rule).

Ties: among the grid points with the maximal objective the search keeps, in order,
the smallest squared Euclidean distance in weight space to the paper's point
(0.35, 0.96), then to (0.5, 0.5) (no preference between US and SS), then the smallest
w_extreme, then the smallest w_middle. Distances are rounded to 1e-12 so that points
mirrored about a reference tie exactly despite floating-point grid values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dsan_core.branches import ATT_DS, ATT_SS, ATT_US
from dsan_core.config import EnsembleConfig
from dsan_core.errors import InputError
from dsan_core.groups import BAND_EXTREME, LABEL_COVID
from dsan_core.paper import PAPER
from dsan_core.prediction_table import (
    BRANCH_ATT_DS_NESTED,
    PREDICTION_COLUMNS,
    SET_TEST,
    SET_VAL,
    check_groups,
    check_predictions,
    require_columns,
)

PAPER_WEIGHTS: tuple[float, float] = PAPER.ensemble_weights
NEUTRAL_WEIGHTS: tuple[float, float] = (0.5, 0.5)
_TIE_DECIMALS = 12


@dataclass(frozen=True)
class EnsembleWeights:
    w_extreme: float
    w_middle: float


@dataclass(frozen=True)
class EnsembleSearch:
    """The search's outcome. `surface`: one row per grid point (w_extreme, w_middle,
    objective); `value` and `paper_value`: the objective at the chosen weights and at
    the paper's (0.35, 0.96) on the same predictions."""

    weights: EnsembleWeights
    objective: str
    value: float
    paper_value: float
    surface: pd.DataFrame
    n_scans: int

    def apply(self, predictions: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
        """`apply_ensemble` with the chosen weights."""
        return apply_ensemble(predictions, groups, self.weights)


@dataclass(frozen=True)
class _Band:
    """One band's US and SS probabilities and labels (1 = COVID)."""

    us: np.ndarray
    ss: np.ndarray
    y: np.ndarray

    def scores(self, weights: np.ndarray) -> np.ndarray:
        """(n_weights, n_scans) DS probabilities, in `apply_ensemble`'s arithmetic."""
        w = weights[:, None]
        return w * self.us[None, :] + (1.0 - w) * self.ss[None, :]


def weight_grid(step: float) -> np.ndarray:
    """{0, step, ..., 1}; values rounded to 10 decimals so 0.35 is the float 0.35."""
    n = round(1.0 / step)
    if n < 1 or abs(n * step - 1.0) > 1e-9:
        raise InputError(f"expected a grid step that divides 1, found {step}")
    return np.round(np.arange(n + 1) / n, 10)


def _twice_within_pairs(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """2 x (Mann-Whitney count of COVID-over-CAP pairs, ties 1/2) per row, within a band."""
    from scipy.stats import rankdata

    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return np.zeros(scores.shape[0], dtype=np.int64)
    twice_rank_sum = 2.0 * rankdata(scores, axis=1)[:, y == 1].sum(axis=1)
    return np.rint(twice_rank_sum).astype(np.int64) - n_pos * (n_pos + 1)


def _twice_cross_pairs(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """2 x (pairs where a COVID scan of band A outscores a CAP scan of band B, ties 1/2)
    for every (w_A, w_B): pos_scores (n_w, m), neg_scores (n_w, n) -> (n_w, n_w)."""
    n_w = pos_scores.shape[0]
    out = np.zeros((n_w, n_w), dtype=np.int64)
    if pos_scores.shape[1] == 0 or neg_scores.shape[1] == 0:
        return out
    # Sorted queries keep the binary searches cache-friendly; counts ignore the order.
    queries = np.sort(pos_scores, axis=1).ravel()
    for j in range(n_w):
        sorted_neg = np.sort(neg_scores[j])
        # left = CAP strictly below, right = at or below: left + right = 2 below + ties.
        twice = (np.searchsorted(sorted_neg, queries, side="left")
                 + np.searchsorted(sorted_neg, queries, side="right"))
        out[:, j] = twice.reshape(pos_scores.shape).sum(axis=1)
    return out


def _auc_surface(extreme: _Band, middle: _Band, we: np.ndarray, wm: np.ndarray) -> np.ndarray:
    if we.size != wm.size:
        raise InputError(f"expected grids of one length, found {we.size} and {wm.size}")
    se, sm = extreme.scores(we), middle.scores(wm)
    pos_e, pos_m = extreme.y == 1, middle.y == 1
    twice = (_twice_within_pairs(se, extreme.y)[:, None]
             + _twice_within_pairs(sm, middle.y)[None, :]
             + _twice_cross_pairs(se[:, pos_e], sm[:, ~pos_m])
             + _twice_cross_pairs(sm[:, pos_m], se[:, ~pos_e]).T)
    n_pos = int(pos_e.sum() + pos_m.sum())
    n_neg = extreme.y.size + middle.y.size - n_pos
    return np.asarray(twice / (2.0 * n_pos * n_neg), dtype=np.float64)


def _confusion(band: _Band, weights: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    called = band.scores(weights) >= threshold
    covid = band.y == 1
    tp = (called & covid).sum(axis=1)
    fp = (called & ~covid).sum(axis=1)
    fn = (~called & covid).sum(axis=1)
    return tp, fp, fn


def _objective_surface(extreme: _Band, middle: _Band, w_extreme: np.ndarray,
                      w_middle: np.ndarray, objective: str, threshold: float) -> np.ndarray:
    """(len(w_extreme), len(w_middle)) objective values; both grids of one length."""
    if objective == "auc":
        return _auc_surface(extreme, middle, w_extreme, w_middle)
    tp_e, fp_e, fn_e = _confusion(extreme, w_extreme, threshold)
    tp_m, fp_m, fn_m = _confusion(middle, w_middle, threshold)
    tp = tp_e[:, None] + tp_m[None, :]
    fp = fp_e[:, None] + fp_m[None, :]
    fn = fn_e[:, None] + fn_m[None, :]
    if objective == "accuracy":
        n = extreme.y.size + middle.y.size
        return np.asarray((n - fp - fn) / n, dtype=np.float64)
    if objective == "f1":
        return np.asarray(2 * tp / (2 * tp + fp + fn), dtype=np.float64)
    raise InputError(f"expected objective 'auc', 'accuracy' or 'f1', found {objective!r}")


def choose_grid_point(grid: np.ndarray, surface: np.ndarray) -> tuple[int, int]:
    """(i, j) of the best grid point, ties broken as the module docstring says."""
    best = np.nanmax(surface)
    i, j = np.nonzero(surface == best)
    we, wm = grid[i], grid[j]
    keys = [
        np.round((we - PAPER_WEIGHTS[0]) ** 2 + (wm - PAPER_WEIGHTS[1]) ** 2, _TIE_DECIMALS),
        np.round((we - NEUTRAL_WEIGHTS[0]) ** 2 + (wm - NEUTRAL_WEIGHTS[1]) ** 2, _TIE_DECIMALS),
        we,
        wm,
    ]
    first = np.lexsort(keys[::-1])[0]
    return int(i[first]), int(j[first])


def _val_bands(predictions: pd.DataFrame, groups: pd.DataFrame) -> tuple[_Band, _Band]:
    require_columns(predictions, PREDICTION_COLUMNS, "predictions")
    # Test rows go before any check, so not even a malformed one can affect the search.
    val = predictions.loc[predictions["set"].astype(str) == SET_VAL]
    val = check_predictions(val)
    pairs = _pair_branches(val)
    labelled = pairs.merge(check_groups(groups), on="scan_id", how="left")
    if labelled["label"].isna().any():
        scan = str(labelled.loc[labelled["label"].isna(), "scan_id"].iloc[0])
        raise InputError("expected every validation scan in the groups table", scan=scan)
    y = (labelled["label"] == LABEL_COVID).to_numpy(np.int64)
    if y.sum() in (0, y.size):
        raise InputError(f"the search needs COVID and CAP validation scans, found "
                         f"{int(y.sum())} COVID of {y.size}")
    extreme = (labelled["ensemble_band"] == BAND_EXTREME).to_numpy()
    us = labelled["p_us"].to_numpy(np.float64)
    ss = labelled["p_ss"].to_numpy(np.float64)
    return (_Band(us[extreme], ss[extreme], y[extreme]),
            _Band(us[~extreme], ss[~extreme], y[~extreme]))


def search_ensemble_weights(predictions: pd.DataFrame, groups: pd.DataFrame,
                            config: EnsembleConfig) -> EnsembleSearch:
    """Grid search of (w_extreme, w_middle) on the TV out-of-fold predictions.

    `predictions` is the whole predictions table (test rows are ignored); `groups`
    gives each scan's label and ensemble band. The objective (config.objective) is
    the pooled AUC, or accuracy / F1 with P >= config.threshold called COVID.
    Whether to search at all (config.search) is the caller's decision; without a
    search, `configured_weights` gives the weights to apply.
    """
    extreme, middle = _val_bands(predictions, groups)
    grid = weight_grid(config.search_step)
    surface = _objective_surface(extreme, middle, grid, grid, config.objective, config.threshold)
    i, j = choose_grid_point(grid, surface)
    paper = np.array(PAPER_WEIGHTS)
    paper_value = _objective_surface(extreme, middle, paper[:1], paper[1:], config.objective,
                                    config.threshold)
    we, wm = np.meshgrid(grid, grid, indexing="ij")
    table = pd.DataFrame({"w_extreme": we.ravel(), "w_middle": wm.ravel(),
                          "objective": surface.ravel()})
    return EnsembleSearch(
        weights=EnsembleWeights(float(grid[i]), float(grid[j])),
        objective=config.objective,
        value=float(surface[i, j]),
        paper_value=float(paper_value[0, 0]),
        surface=table,
        n_scans=int(extreme.y.size + middle.y.size),
    )


def configured_weights(config: EnsembleConfig) -> EnsembleWeights:
    """The fixed weights of a run without search (config.search is False)."""
    return EnsembleWeights(config.w_extreme, config.w_middle)


def _pair_branches(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (scan_id, set, fold) with p_us, p_ss, key_us, key_ss."""
    keys = ["scan_id", "set", "fold"]
    columns = [*keys, "probability", "model_key"]
    us = predictions.loc[predictions["branch"] == ATT_US, columns]
    ss = predictions.loc[predictions["branch"] == ATT_SS, columns]
    pairs = us.merge(ss, on=keys, how="outer", suffixes=("_us", "_ss"), indicator=True)
    lone = pairs["_merge"] != "both"
    if lone.any():
        row = pairs.loc[lone].iloc[0]
        has, lacks = ((ATT_US, ATT_SS) if row["_merge"] == "left_only"
                      else (ATT_SS, ATT_US))
        raise InputError(f"expected {ATT_US} and {ATT_SS} predictions for the "
                         f"same {row['set']} fold {row['fold']}, found {has} without {lacks}",
                         scan=str(row["scan_id"]))
    pairs = pairs.drop(columns="_merge").rename(columns={
        "probability_us": "p_us", "probability_ss": "p_ss",
        "model_key_us": "key_us", "model_key_ss": "key_ss"})
    return pairs.sort_values(keys, ignore_index=True)


def apply_ensemble(predictions: pd.DataFrame, groups: pd.DataFrame,
                   weights: EnsembleWeights) -> pd.DataFrame:
    """`att_ds` prediction rows (the predictions table's columns) from the att_us and
    att_ss rows: val rows per scan (both from its validation fold), test rows per scan
    and fold (that fold's US and SS models). model_key is 'ds(<US key>+<SS key>)'."""
    pairs = _pair_branches(check_predictions(predictions))
    bands = check_groups(groups)[["scan_id", "ensemble_band"]]
    pairs = pairs.merge(bands, on="scan_id", how="left")
    if pairs["ensemble_band"].isna().any():
        scan = str(pairs.loc[pairs["ensemble_band"].isna(), "scan_id"].iloc[0])
        raise InputError("expected every predicted scan in the groups table", scan=scan)
    w = np.where(pairs["ensemble_band"] == BAND_EXTREME, weights.w_extreme, weights.w_middle)
    us = pairs["p_us"].to_numpy(np.float64)
    ss = pairs["p_ss"].to_numpy(np.float64)
    return pd.DataFrame({
        "scan_id": pairs["scan_id"],
        "fold": pairs["fold"].astype(np.int64),
        "branch": ATT_DS,
        "set": pairs["set"],
        "probability": w * us + (1.0 - w) * ss,
        "model_key": "ds(" + pairs["key_us"] + "+" + pairs["key_ss"] + ")",
    })


@dataclass(frozen=True)
class NestedFold:
    """Fold k's weights, chosen on the other folds: `value` is the objective there (NaN
    without a search), `n_searched` their scans, `n_scored` fold k's scans."""

    fold: int
    weights: EnsembleWeights
    value: float
    n_searched: int
    n_scored: int


@dataclass(frozen=True)
class NestedEnsemble:
    """Per-fold weights and the `att_ds_nested` val rows (the predictions table's columns)."""

    folds: tuple[NestedFold, ...]
    predictions: pd.DataFrame


def nested_ensemble(predictions: pd.DataFrame, groups: pd.DataFrame,
                    config: EnsembleConfig) -> NestedEnsemble:
    """DS scored nested (module docstring): fold k's val rows combined with weights
    searched (config) on the val rows of the other folds only. Without a search
    (config.search False) every fold gets the configured weights. Test rows are ignored."""
    require_columns(predictions, PREDICTION_COLUMNS, "predictions")
    val = check_predictions(predictions.loc[predictions["set"].astype(str) == SET_VAL])
    folds = sorted(int(f) for f in val["fold"].unique())
    if len(folds) < 2:
        raise InputError(f"nested weights need at least 2 validation folds, found {folds}")
    chosen: list[NestedFold] = []
    parts: list[pd.DataFrame] = []
    for fold in folds:
        outer = val.loc[val["fold"] == fold]
        if config.search:
            search = search_ensemble_weights(val.loc[val["fold"] != fold], groups, config)
            weights, value, searched = search.weights, search.value, search.n_scans
        else:
            weights, value = configured_weights(config), float("nan")
            searched = int((val.loc[val["fold"] != fold, "branch"] == ATT_US).sum())
        rows = apply_ensemble(outer, groups, weights)
        chosen.append(NestedFold(fold, weights, value, searched, len(rows)))
        parts.append(rows.assign(branch=BRANCH_ATT_DS_NESTED, model_key=(
            rows["model_key"].str.replace("ds(", "ds_nested(", n=1, regex=False))))
    out = pd.concat(parts, ignore_index=True).sort_values(["fold", "scan_id"],
                                                          ignore_index=True)
    return NestedEnsemble(tuple(chosen), out)


def shipped_predictions(predictions: pd.DataFrame, groups: pd.DataFrame,
                        weights: EnsembleWeights) -> pd.DataFrame:
    """The shipped model on the test scans: per scan, P_US and P_SS each averaged over
    the fold models, then w_band * P_US + (1 - w_band) * P_SS. Columns scan_id,
    probability, n_models (fold models per branch). By linearity this equals the mean of
    the per-fold `att_ds` test rows when every fold model scored the scan."""
    require_columns(predictions, PREDICTION_COLUMNS, "predictions")
    test = check_predictions(predictions.loc[predictions["set"].astype(str) == SET_TEST])
    test = test.loc[test["branch"].isin([ATT_US, ATT_SS])]
    stats = test.groupby(["scan_id", "branch"])["probability"].agg(["mean", "size"])
    means = stats["mean"].unstack("branch")
    for branch in (ATT_US, ATT_SS):
        if branch not in means.columns:
            means[branch] = np.nan
    lone = means[[ATT_US, ATT_SS]].isna().any(axis=1)
    if lone.any():
        raise InputError(f"expected {ATT_US} and {ATT_SS} test predictions of "
                         "every test scan, found one branch only",
                         scan=str(means.index[lone.to_numpy()][0]))
    bands = check_groups(groups).set_index("scan_id")["ensemble_band"]
    unknown = ~means.index.isin(bands.index)
    if unknown.any():
        raise InputError("expected every predicted scan in the groups table",
                         scan=str(means.index[unknown][0]))
    extreme = (bands.loc[means.index] == BAND_EXTREME).to_numpy()
    w = np.where(extreme, weights.w_extreme, weights.w_middle)
    us = means[ATT_US].to_numpy(np.float64)
    ss = means[ATT_SS].to_numpy(np.float64)
    n_models = stats["size"].unstack("branch")[ATT_US].to_numpy(np.int64)
    return pd.DataFrame({"scan_id": means.index.astype(str), "probability": w * us + (1.0 - w) * ss,
                         "n_models": n_models})
