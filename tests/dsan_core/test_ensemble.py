from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from dsan_core.config import EnsembleConfig, GroupsConfig
from dsan_core.ensemble import (
    EnsembleWeights,
    apply_ensemble,
    choose_grid_point,
    nested_ensemble,
    search_ensemble_weights,
    shipped_predictions,
    weight_grid,
)
from dsan_core.errors import InputError
from dsan_core.groups import assign_groups

# Ratios giving each band: 0.0 extreme (< 0.001), 0.01 middle.
EXTREME, MIDDLE = 0.0, 0.01


def _tables(scans: Sequence[tuple[str, str, float, float, float]],
            set_name: str = "val") -> tuple[pd.DataFrame, pd.DataFrame]:
    """scans: (scan_id, label, ratio, P_US, P_SS) -> (predictions, groups)."""
    groups = assign_groups(pd.DataFrame({
        "scan_id": [s[0] for s in scans], "label": [s[1] for s in scans],
        "infection_ratio": [s[2] for s in scans]}), GroupsConfig())
    rows = [(s[0], i % 2, branch, set_name, p, f"{branch}-f{i % 2}")
            for i, s in enumerate(scans) for branch, p in (("att_us", s[3]), ("att_ss", s[4]))]
    predictions = pd.DataFrame(rows, columns=["scan_id", "fold", "branch", "set",
                                              "probability", "model_key"])
    return predictions, groups


# A unique AUC optimum at (w_extreme, w_middle) = (0.42, 0.73). A scan with P_US = a,
# P_SS = b scores b + w (a - b). Extreme scores stay in [0, 0.4] and middle ones in
# [0.6, 1], so cross-band pairs never change order. In the extreme band COVID e1 beats
# CAP e2 only when w > 0.415 and COVID e3 beats CAP e4 only when w < 0.425; likewise
# 0.725 < w < 0.735 in the middle band.
OPTIMUM = [
    ("e1", "COVID", EXTREME, 0.4, 0.0), ("e2", "CAP", EXTREME, 0.166, 0.166),
    ("e3", "COVID", EXTREME, 0.17, 0.17), ("e4", "CAP", EXTREME, 0.4, 0.0),
    ("m1", "COVID", MIDDLE, 1.0, 0.6), ("m2", "CAP", MIDDLE, 0.89, 0.89),
    ("m3", "COVID", MIDDLE, 0.894, 0.894), ("m4", "CAP", MIDDLE, 1.0, 0.6),
]


def _naive_surface(predictions: pd.DataFrame, groups: pd.DataFrame, grid: np.ndarray,
                   metric: str) -> np.ndarray:
    wide = predictions.pivot(index="scan_id", columns="branch", values="probability")
    g = groups.set_index("scan_id").loc[wide.index]
    y = (g["label"] == "COVID").to_numpy(int)
    extreme = (g["ensemble_band"] == "extreme").to_numpy()
    out = np.empty((grid.size, grid.size))
    for i, we in enumerate(grid):
        for j, wm in enumerate(grid):
            w = np.where(extreme, we, wm)
            p = w * wide["att_us"].to_numpy() + (1.0 - w) * wide["att_ss"].to_numpy()
            called = (p >= 0.5).astype(int)
            if metric == "auc":
                out[i, j] = roc_auc_score(y, p)
            else:
                out[i, j] = (accuracy_score if metric == "accuracy" else f1_score)(y, called)
    return out


def test_search_recovers_a_hand_constructed_optimum() -> None:
    predictions, groups = _tables(OPTIMUM)
    result = search_ensemble_weights(predictions, groups, EnsembleConfig())
    assert (result.weights.w_extreme, result.weights.w_middle) == (0.42, 0.73)
    best = result.surface.loc[result.surface["objective"] == result.surface["objective"].max()]
    assert len(best) == 1
    # 16 COVID-CAP pairs: 3.5 of 4 within each band; of the cross-band ones, extreme
    # COVID never beats middle CAP (0 of 4), middle COVID always beats extreme CAP (4).
    assert result.value == pytest.approx((3.5 + 3.5 + 0 + 4) / 16)
    assert result.n_scans == 8


@pytest.mark.parametrize("objective", ["auc", "accuracy", "f1"])
def test_surface_equals_a_naive_scikit_learn_loop(objective: str) -> None:
    scans = [(f"s{i}", "COVID" if i % 3 else "CAP", (EXTREME, MIDDLE, 0.05)[i % 3],
              round(0.1 + 0.8 * ((i * 7) % 11) / 10, 2), round(0.05 + 0.9 * ((i * 5) % 13) / 12, 2))
             for i in range(18)]
    predictions, groups = _tables(scans)
    config = EnsembleConfig(search_step=0.1, objective=objective)
    result = search_ensemble_weights(predictions, groups, config)
    naive = _naive_surface(predictions, groups, weight_grid(0.1), objective)
    surface = result.surface["objective"].to_numpy().reshape(11, 11)
    np.testing.assert_allclose(surface, naive, rtol=0, atol=1e-12)
    assert result.surface[["w_extreme", "w_middle"]].iloc[12].tolist() == [0.1, 0.1]


def test_test_rows_cannot_change_the_result() -> None:
    predictions, groups = _tables(OPTIMUM)
    clean = search_ensemble_weights(predictions, groups, EnsembleConfig())
    # Adversarial test rows: the same scans with the labels' opposite ordering, extra
    # folds, and a scan the groups table does not know.
    flipped = predictions.assign(set="test", probability=1.0 - predictions["probability"])
    unknown = predictions.iloc[:2].assign(set="test", scan_id="not-in-groups")
    polluted = pd.concat([predictions, flipped, flipped.assign(fold=7), unknown],
                         ignore_index=True)
    dirty = search_ensemble_weights(polluted, groups, EnsembleConfig())
    assert dirty.weights == clean.weights and dirty.value == clean.value
    pd.testing.assert_frame_equal(dirty.surface, clean.surface)


def _surface(points: Sequence[tuple[float, float]], step: float = 0.05) -> tuple[np.ndarray, ...]:
    grid = weight_grid(step)
    surface = np.zeros((grid.size, grid.size))
    for we, wm in points:
        surface[np.isclose(grid, we), np.isclose(grid, wm)] = 1.0
    return grid, surface


@pytest.mark.parametrize(
    ("maxima", "chosen"),
    [
        # A flat surface: the paper's point.
        ([], (0.35, 0.95)),
        # The nearest maximum to (0.35, 0.96) in weight space.
        ([(0.0, 0.0), (0.3, 0.8), (1.0, 1.0)], (0.3, 0.8)),
        # (0.25, 0.95) and (0.45, 0.95) are as far from (0.35, 0.96) (floating-point
        # grid values aside); (0.45, 0.95) is nearer (0.5, 0.5).
        ([(0.25, 0.95), (0.45, 0.95)], (0.45, 0.95)),
        ([(0.45, 0.95), (0.25, 0.95)], (0.45, 0.95)),
    ],
)
def test_ties_go_to_the_paper_point_then_to_one_half(
        maxima: list[tuple[float, float]], chosen: tuple[float, float]) -> None:
    grid, surface = _surface(maxima)
    if not maxima:
        surface[:] = 1.0
    i, j = choose_grid_point(grid, surface)
    assert (grid[i], grid[j]) == pytest.approx(chosen)


def test_flat_surface_on_the_default_grid_picks_exactly_the_paper_point() -> None:
    grid = weight_grid(0.01)
    i, j = choose_grid_point(grid, np.ones((grid.size, grid.size)))
    assert (grid[i], grid[j]) == (0.35, 0.96)


def test_accuracy_ties_resolve_to_the_point_of_the_optimal_box_nearest_the_paper() -> None:
    # P = P_SS + w (P_US - P_SS), and P >= 0.5 is COVID. Accuracy is 1 exactly when
    # 0.5 < w_extreme < 2/3 and 1/26 < w_middle <= 1/11: on the grid [0.51, 0.66] x
    # [0.04, 0.09], whose point nearest (0.35, 0.96) is (0.51, 0.09).
    box = [
        ("a", "COVID", EXTREME, 1.0, 0.0),    # w >= 0.5
        ("b", "CAP", EXTREME, 0.0, 1.0),      # 1 - w < 0.5
        ("c", "CAP", EXTREME, 0.6, 0.3),      # 0.3 + 0.3 w < 0.5
        ("d", "COVID", MIDDLE, 0.0, 0.55),    # 0.55 (1 - w) >= 0.5
        ("e", "CAP", MIDDLE, 0.0, 0.52),      # 0.52 (1 - w) < 0.5
    ]
    predictions, groups = _tables(box)
    result = search_ensemble_weights(predictions, groups, EnsembleConfig(objective="accuracy"))
    best = result.surface.loc[result.surface["objective"] == 1.0]
    assert (best["w_extreme"].min(), best["w_extreme"].max()) == (0.51, 0.66)
    assert (best["w_middle"].min(), best["w_middle"].max()) == (0.04, 0.09)
    assert len(best) == 16 * 6
    assert (result.weights.w_extreme, result.weights.w_middle) == (0.51, 0.09)


@pytest.mark.parametrize(
    ("ratio", "band_weight"),
    [(0.0, 0.2), (0.0009999, 0.2), (0.001, 0.7), (0.030, 0.7), (0.0300001, 0.2)],
)
def test_bands_at_the_exact_boundaries(ratio: float, band_weight: float) -> None:
    # P_US = 1, P_SS = 0: the DS probability is the band's weight.
    predictions, groups = _tables([("s", "CAP", ratio, 1.0, 0.0)], set_name="test")
    out = apply_ensemble(predictions, groups, EnsembleWeights(w_extreme=0.2, w_middle=0.7))
    assert out["probability"].tolist() == [band_weight]


def test_apply_combines_each_folds_models_and_keeps_val_rows() -> None:
    val, groups = _tables([("a", "COVID", EXTREME, 0.8, 0.4), ("b", "CAP", MIDDLE, 0.3, 0.1)])
    test = pd.DataFrame([
        ("a", 0, "att_us", "test", 0.6, "us0"), ("a", 0, "att_ss", "test", 0.2, "ss0"),
        ("a", 1, "att_us", "test", 1.0, "us1"), ("a", 1, "att_ss", "test", 0.0, "ss1"),
        ("a", 0, "rn34_us", "test", 0.9, "rn0"),
    ], columns=val.columns)
    out = apply_ensemble(pd.concat([val, test], ignore_index=True), groups,
                         EnsembleWeights(w_extreme=0.25, w_middle=0.5))
    assert set(out["branch"]) == {"att_ds"}
    rows = {(r.set, r.scan_id, r.fold): (r.probability, r.model_key)
            for r in out.itertuples(index=False)}
    assert rows[("val", "a", 0)][0] == pytest.approx(0.25 * 0.8 + 0.75 * 0.4)
    assert rows[("val", "b", 1)][0] == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)
    assert rows[("test", "a", 0)] == pytest.approx((0.25 * 0.6 + 0.75 * 0.2, "ds(us0+ss0)"))
    assert rows[("test", "a", 1)][0] == pytest.approx(0.25)
    assert len(out) == 4


def test_apply_on_val_reproduces_the_searched_auc() -> None:
    predictions, groups = _tables(OPTIMUM)
    result = search_ensemble_weights(predictions, groups, EnsembleConfig())
    ds = result.apply(predictions, groups).merge(groups, on="scan_id")
    assert roc_auc_score(ds["label"] == "COVID", ds["probability"]) == pytest.approx(result.value)


def test_a_us_prediction_without_its_ss_partner_is_an_input_error() -> None:
    predictions, groups = _tables(OPTIMUM)
    drop = (predictions["scan_id"] == "e2") & (predictions["branch"] == "att_ss")
    lone = predictions.loc[~drop]
    with pytest.raises(InputError, match="scan e2: .*found att_us without att_ss"):
        search_ensemble_weights(lone, groups, EnsembleConfig())


def test_search_step_must_divide_one() -> None:
    with pytest.raises(ValidationError, match="divides 1"):
        EnsembleConfig(search_step=0.03)
    assert weight_grid(0.05).size == 21


def _three_folds() -> tuple[pd.DataFrame, pd.DataFrame]:
    """OPTIMUM's 8 scans in folds 0 and 1 (alternating), and 6 more in fold 2."""
    extra = [("f1", "COVID", EXTREME, 0.7, 0.2), ("f2", "CAP", EXTREME, 0.3, 0.6),
             ("f3", "COVID", MIDDLE, 0.4, 0.9), ("f4", "CAP", MIDDLE, 0.5, 0.1),
             ("f5", "COVID", 0.05, 0.8, 0.7), ("f6", "CAP", 0.05, 0.2, 0.3)]
    predictions, groups = _tables([*OPTIMUM, *extra])
    in_fold_2 = predictions["scan_id"].str.startswith("f")
    predictions.loc[in_fold_2, "fold"] = 2
    return predictions, groups


def test_nested_weights_of_a_fold_are_the_search_on_the_other_folds() -> None:
    predictions, groups = _three_folds()
    config = EnsembleConfig(search_step=0.05)
    nested = nested_ensemble(predictions, groups, config)
    assert [f.fold for f in nested.folds] == [0, 1, 2]
    for fold in nested.folds:
        other = search_ensemble_weights(predictions[predictions["fold"] != fold.fold],
                                        groups, config)
        assert fold.weights == other.weights and fold.value == other.value
        assert fold.n_searched == other.n_scans
    rows = nested.predictions
    assert set(rows["branch"]) == {"att_ds_nested"} and set(rows["set"]) == {"val"}
    assert sorted(rows["scan_id"]) == sorted(groups["scan_id"])  # each scan once
    # Fold 2's rows are fold 2's att_us / att_ss combined with fold 2's own weights.
    fold_2 = predictions[predictions["fold"] == 2]
    expected = apply_ensemble(fold_2, groups, nested.folds[2].weights)
    got = rows[rows["fold"] == 2].sort_values("scan_id", ignore_index=True)
    np.testing.assert_allclose(got["probability"],
                               expected.sort_values("scan_id")["probability"])


@pytest.mark.parametrize("held_out", [0, 1, 2])
def test_adversarial_rows_in_the_held_out_fold_leave_its_weights_unchanged(
        held_out: int) -> None:
    predictions, groups = _three_folds()
    config = EnsembleConfig(search_step=0.05)
    clean = nested_ensemble(predictions, groups, config)
    # Reverse the held-out fold's ranking in both branches: a search that saw these rows
    # would move towards weights that favour them.
    dirty = predictions.copy()
    scored = dirty["fold"] == held_out
    dirty.loc[scored, "probability"] = 1.0 - dirty.loc[scored, "probability"]
    attacked = nested_ensemble(dirty, groups, config)
    assert attacked.folds[held_out].weights == clean.folds[held_out].weights
    assert attacked.folds[held_out].value == clean.folds[held_out].value
    # The in-sample search does move: the attack is not a no-op.
    assert (search_ensemble_weights(dirty, groups, config).value
            != search_ensemble_weights(predictions, groups, config).value)


def test_nested_needs_two_folds() -> None:
    predictions, groups = _tables(OPTIMUM)
    with pytest.raises(InputError, match="at least 2 validation folds"):
        nested_ensemble(predictions.assign(fold=0), groups, EnsembleConfig())


def test_shipped_model_equals_the_mean_of_the_per_fold_ds_test_predictions() -> None:
    _, groups = _tables([("a", "COVID", EXTREME, 0, 0), ("b", "CAP", MIDDLE, 0, 0)])
    test = pd.DataFrame([
        (scan, fold, branch, "test", p, f"{branch}{fold}")
        for scan, values in (("a", (0.6, 0.2, 1.0, 0.0, 0.7, 0.4)),
                             ("b", (0.3, 0.9, 0.1, 0.5, 0.2, 0.2)))
        for fold in range(3)
        for branch, p in (("att_us", values[2 * fold]), ("att_ss", values[2 * fold + 1]))
    ], columns=["scan_id", "fold", "branch", "set", "probability", "model_key"])
    weights = EnsembleWeights(w_extreme=0.25, w_middle=0.9)
    shipped = shipped_predictions(test, groups, weights).set_index("scan_id")
    per_fold = apply_ensemble(test, groups, weights).groupby("scan_id")["probability"].mean()
    np.testing.assert_allclose(shipped.loc[per_fold.index, "probability"], per_fold,
                               rtol=0, atol=1e-12)
    # By hand for scan a (extreme band): P_US = (0.6 + 1.0 + 0.7) / 3, P_SS = 0.2.
    assert shipped.loc["a", "probability"] == pytest.approx(
        0.25 * (2.3 / 3) + 0.75 * 0.2)
    assert list(shipped["n_models"]) == [3, 3]
