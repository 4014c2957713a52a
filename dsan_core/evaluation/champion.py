"""Champion / challenger: is a newly trained ensemble not worse than the promoted one on
the same test scans?

Both models' P(COVID) on the champion's fixed test set (each the mean over its fold
models of the DS predictions). AUC: DeLong's paired test; sensitivity and specificity
at the threshold: a paired patient-level bootstrap of the differences (both models'
metrics from the same replicate weights). The challenger is promoted when none of the
three point differences (challenger - champion) is below -margin; the decision keeps
every number and the reason in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from dsan_core.config import GateConfig
from dsan_core.evaluation.bootstrap import (
    patient_bootstrap_weights,
    percentile_interval,
    weighted_metrics,
)
from dsan_core.evaluation.delong import delong_test
from dsan_core.evaluation.metrics import AUC, SENSITIVITY, SPECIFICITY, binary_metrics

GATED = (AUC, SENSITIVITY, SPECIFICITY)


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    champion: float
    challenger: float
    difference: float  # challenger - champion
    ci_low: float
    ci_high: float
    p_value: float  # DeLong for AUC; NaN for the bootstrapped metrics


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    n_scans: int
    comparisons: tuple[MetricComparison, ...]

    def numbers(self) -> dict[str, dict[str, float]]:
        return {c.metric: {"champion": c.champion, "challenger": c.challenger,
                           "difference": c.difference, "ci_low": c.ci_low,
                           "ci_high": c.ci_high, "p_value": c.p_value}
                for c in self.comparisons}


def compare_with_champion(y_true: ArrayLike, challenger: ArrayLike, champion: ArrayLike,
                          patient_ids: ArrayLike, config: GateConfig) -> GateDecision:
    """The gate's decision on one test set (y: 1 COVID, 0 CAP; one patient id per scan)."""
    y = np.asarray(y_true, dtype=np.int64)
    new, old = (np.asarray(p, dtype=np.float64) for p in (challenger, champion))
    point_new = binary_metrics(y, new, config.threshold)
    point_old = binary_metrics(y, old, config.threshold)
    weights = patient_bootstrap_weights(patient_ids, config.bootstrap_samples,
                                        np.random.default_rng(config.seed))
    boot_new = weighted_metrics(y, new, weights, config.threshold)
    boot_old = weighted_metrics(y, old, weights, config.threshold)
    both = 0 < int(y.sum()) < y.size
    delong = delong_test(y, new, old, config.ci_level) if both else None
    rows = []
    for metric in GATED:
        difference = point_new[metric] - point_old[metric]
        low, high = percentile_interval(boot_new[metric] - boot_old[metric], config.ci_level)
        p_value = float("nan")
        if metric == AUC and delong is not None:  # DeLong's interval and test for AUC
            low, high, p_value = delong.ci_low, delong.ci_high, float(delong.p_value)
        rows.append(MetricComparison(metric, point_old[metric], point_new[metric], difference,
                                     low, high, p_value))
    worse = [r for r in rows if not np.isfinite(r.difference) or r.difference < -config.margin]
    if worse:
        reason = "worse beyond the margin of {:.3f} in {}".format(config.margin, ", ".join(
            f"{r.metric} ({r.challenger:.3f} vs {r.champion:.3f})" for r in worse))
    else:
        reason = (f"not worse than the champion beyond {config.margin:.3f} in AUC, "
                  "sensitivity or specificity")
    return GateDecision(not worse, reason, int(y.size), tuple(rows))
