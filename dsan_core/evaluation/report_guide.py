"""The report's "How to read this" section: what its numbers mean, as sentences built
from the tables (never hand-written numbers): in-sample against nested, the untrained
baselines, the sample sizes, the threshold rule, the tests and the seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from dsan_core.branches import ATT_DS, ATT_SS, ATT_US, RN34_US
from dsan_core.config import TrainConfig
from dsan_core.evaluation.comparisons import TEST_DELONG, TEST_PAIRED_T
from dsan_core.evaluation.metrics import AUC
from dsan_core.evaluation.report_tables import SIGNIFICANCE, model_name, number
from dsan_core.evaluation.tables import AGG_AVERAGED, AGG_FOLD, AGG_POOLED, BIN_ALL, SET_TV
from dsan_core.evaluation.thresholds import RULE_FIXED, RULE_YOUDEN
from dsan_core.prediction_table import (
    BASELINES,
    BRANCH_ATT_DS_NESTED,
    MODEL_NAMES,
    SHIPPED,
)

if TYPE_CHECKING:  # dsan_core.ensemble imports this package
    from dsan_core.ensemble import NestedFold

#: The networks a DS claim is weighed against on TV (the in-sample DS is not one).
_TV_NETWORKS = (RN34_US, ATT_US, ATT_SS, BRANCH_ATT_DS_NESTED)


def _row(metrics: pd.DataFrame, model: str, set_name: str, aggregate: str,
         metric: str = AUC) -> dict[str, Any] | None:
    rows = metrics.loc[(metrics["model"] == model) & (metrics["set"] == set_name)
                       & (metrics["aggregate"] == aggregate) & (metrics["bin"] == BIN_ALL)
                       & (metrics["metric"] == metric)]
    return None if rows.empty else {str(k): v for k, v in rows.iloc[0].items()}


def _sample(row: dict[str, Any]) -> str:
    covid, cap = int(row["n_covid"]), int(row["n_cap"])
    return (f"{covid + cap} scans of {int(row['n_patients'])} patients ({covid} COVID, "
            f"{cap} CAP)")


def _best(metrics: pd.DataFrame, models: Sequence[str], set_name: str,
          aggregate: str) -> tuple[str, float] | None:
    found = [(m, float(r["value"])) for m in models
             if (r := _row(metrics, m, set_name, aggregate)) is not None
             and pd.notna(r["value"])]
    return max(found, key=lambda item: item[1]) if found else None


def _sets(metrics: pd.DataFrame) -> list[str]:
    tv = _row(metrics, ATT_US, SET_TV, AGG_POOLED) or _any(metrics, SET_TV, AGG_POOLED)
    test = _row(metrics, SHIPPED, "test", AGG_AVERAGED) or _any(metrics, "test", AGG_FOLD)
    folds = metrics.loc[metrics["aggregate"] == AGG_FOLD, "fold"].dropna().nunique()
    out = []
    if tv is not None:
        out.append(f"**Sample sizes.** TV: {_sample(tv)}, scored out-of-fold in {folds} folds. "
                   + (f"Test: {_sample(test)}." if test is not None else "No test set."))
        if test is not None:
            smallest = min(int(test["n_covid"]), int(test["n_cap"]))
            if smallest > 0:
                out[-1] += (f" Its smaller class has {smallest} scan"
                            f"{'' if smallest == 1 else 's'}: one scan moves "
                            f"sensitivity or specificity by {1.0 / smallest:.3f}. Every "
                            "table gives n beside its metrics.")
    return out


def _any(metrics: pd.DataFrame, set_name: str, aggregate: str) -> dict[str, Any] | None:
    rows = metrics.loc[(metrics["set"] == set_name) & (metrics["aggregate"] == aggregate)
                       & (metrics["bin"] == BIN_ALL) & (metrics["metric"] == AUC)]
    return None if rows.empty else {str(k): v for k, v in rows.iloc[0].items()}


def _in_sample(metrics: pd.DataFrame, nested: Sequence[NestedFold]) -> list[str]:
    ds = _row(metrics, ATT_DS, SET_TV, AGG_POOLED)
    honest = _row(metrics, BRANCH_ATT_DS_NESTED, SET_TV, AGG_POOLED)
    if ds is None or honest is None:
        return []
    text = (f"**In-sample against nested.** The TV column pools out-of-fold predictions. "
            f"'{model_name(ATT_DS)}' is in-sample on TV: its weights were searched on "
            f"those same predictions (TV AUC {number(ds['value'])}, optimistic). "
            f"'{model_name(BRANCH_ATT_DS_NESTED)}' scores fold k with weights searched on the "
            f"other folds: TV AUC {number(honest['value'])}")
    branches = _best(metrics, (ATT_US, ATT_SS), SET_TV, AGG_POOLED)
    if branches is not None:
        text += f", against {number(branches[1])} for its better branch ({model_name(branches[0])})"
    text += "."
    if nested:
        we = [f.weights.w_extreme for f in nested]
        wm = [f.weights.w_middle for f in nested]
        text += (f" The nested weights range over w_extreme {min(we):.2f}-{max(we):.2f} and "
                 f"w_middle {min(wm):.2f}-{max(wm):.2f} across the folds.")
    text += (" The DS test rows and the shipped model use the weights searched on all of TV "
             "(the method's rule), which the test scans never saw.")
    return [text]


def _test_rows(metrics: pd.DataFrame) -> list[str]:
    shipped = _row(metrics, SHIPPED, "test", AGG_AVERAGED)
    text = ("**Test rows.** Each fold's model scores the same test scans; Table II gives "
            "mean ± std over the fold models, which are not independent samples.")
    if shipped is not None:
        text += (f" '{model_name(SHIPPED)}' is the model `dsan predict` uses (each attention "
                 "branch averaged over the fold models, then DS with the all-TV weights), "
                 f"scored once: test AUC {number(shipped['value'])} "
                 f"[{number(shipped['ci_low'])}, {number(shipped['ci_high'])}] "
                 "(patient-level bootstrap).")
    return [text]


def _baselines(metrics: pd.DataFrame) -> list[str]:
    base_tv = _best(metrics, BASELINES, SET_TV, AGG_POOLED)
    if base_tv is None:
        return []
    net_tv = _best(metrics, _TV_NETWORKS, SET_TV, AGG_POOLED)
    text = ("**Baselines.** Rows marked 'not in the paper' are untrained: logistic "
            "regressions, fit with the same folds, on the mean lung intensity of the network "
            "input, on the segmenter's infection ratio, and on hand features (those two plus "
            f"a histogram of the input in the lung). The best on TV is {MODEL_NAMES[base_tv[0]]} "
            f"at AUC {number(base_tv[1])}")
    if net_tv is not None:
        text += (f"; the best network (nested DS for DS) is {model_name(net_tv[0])} at "
                 f"{number(net_tv[1])}")
    text += "."
    base_test = _best(metrics, BASELINES, "test", AGG_AVERAGED)
    net_test = _best(metrics, (RN34_US, ATT_US, ATT_SS, SHIPPED), "test",
                     AGG_AVERAGED)
    if base_test is not None and net_test is not None:
        text += (f" On test (fold-averaged models): best baseline {number(base_test[1])}, best "
                 f"network {number(net_test[1])} ({model_name(net_test[0])}).")
    return [text + " A network that does not beat them has not learnt more than they measure."]


def _threshold(thresholds: pd.DataFrame | None) -> list[str]:
    if thresholds is None or thresholds.empty:
        return []
    rules = set(thresholds["rule"])
    if rules == {RULE_FIXED}:
        text = (f"**Threshold.** P(COVID) >= {number(thresholds['threshold'].iloc[0])} is "
                "COVID for every model (rule 'fixed', the paper's).")
    else:
        text = ("**Threshold.** Accuracy, sensitivity, specificity and F1 call COVID at "
                "P(COVID) >= a threshold chosen on TV out-of-fold predictions by maximal "
                "Youden's J (rule 'youden'): for the TV rows, fold k's threshold was chosen on "
                "the other folds (nested); for test, on all of TV. Each model's value is in "
                "Table II and 'Thresholds'.")
        if RULE_YOUDEN not in rules:
            text += " (J was undefined everywhere, so the fixed threshold stands in.)"
    shipped = thresholds[(thresholds["model"] == ATT_DS) & thresholds["fold"].isna()]
    if len(shipped):
        text += (" `dsan predict` calls COVID at the DS ensemble's threshold chosen on all of "
                 f"TV, {number(float(shipped['threshold'].iloc[0]))}, as the shipped model's "
                 "test row was scored.")
    return [text]


def _tests(comparisons: pd.DataFrame) -> list[str]:
    if comparisons.empty:
        return []
    delong = comparisons.loc[(comparisons["test"] == TEST_DELONG)
                             & (comparisons["set"] == "test") & (comparisons["bin"] == BIN_ALL)]
    t = comparisons.loc[(comparisons["test"] == TEST_PAIRED_T) & (comparisons["bin"] == BIN_ALL)]
    undefined = int(t["p_value"].isna().sum())
    stars = int((delong["p_holm"] < SIGNIFICANCE).sum())
    return [f"**Statistics.** Stars mark Holm-adjusted p < {SIGNIFICANCE} within each table. "
            "The paired t-tests across fold models are the paper's; fold models scored on the "
            f"same test scans are not independent ({undefined} of {len(t)} t-tests on all "
            "scans are undefined: equal differences in every fold). Test claims rest on the "
            f"DeLong tests between fold-averaged models ({stars} of {len(delong)} significant "
            "on all test scans) and on the bootstrap intervals."]


def _faithfulness(faithfulness: pd.DataFrame | None) -> list[str]:
    if faithfulness is None or faithfulness.empty:
        return []
    rows = faithfulness.loc[(faithfulness["bin"] == BIN_ALL) & (faithfulness["n_maps"] > 0)]
    if rows.empty:
        return []
    parts = [f"{model_name(str(r.model))} {number(r.mass_inside_mean)} against "
             f"{number(r.chance_mean)} (lift {number(r.lift_mean, 2)}; deletion drop "
             f"{number(r.deletion_drop_mean)} against {number(r.random_drop_mean)} at random)"
             for r in rows.itertuples(index=False)]
    return ["**Attention.** Map mass inside the infection, scored inside the lung, against "
            "the chance level of a uniform lung map: " + "; ".join(parts) + "."]


def _networks(network: str) -> list[str]:
    if not network:
        return []
    paper = TrainConfig().network_summary()
    if network == paper:
        return [f"**Networks.** The paper's: {network}."]
    return [f"**Networks.** The rows keep the paper's model names (RN34); the networks "
            f"trained here are a {network}, where the paper trained a {paper} (the "
            "profile's `train` section)."]


def how_to_read(metrics: pd.DataFrame, comparisons: pd.DataFrame,
                thresholds: pd.DataFrame | None, nested: Sequence[NestedFold],
                faithfulness: pd.DataFrame | None, network: str = "") -> list[str]:
    """The section's paragraphs (Markdown bold for the lead words)."""
    return [
        *_networks(network), *_in_sample(metrics, nested), *_test_rows(metrics),
        *_baselines(metrics), *_sets(metrics), *_threshold(thresholds), *_tests(comparisons),
        *_faithfulness(faithfulness),
        "**Seeds.** This report is one run, trained with one seed; the spread of the same "
        "numbers over training seeds is in benchmarks/README.md (\"Does the demo learn?\"). "
        "A difference smaller than that spread is not a finding.",
    ]
