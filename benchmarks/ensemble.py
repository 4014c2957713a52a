"""Ensemble weight search and evaluation metrics at the paper's scale, against naive loops.

    .venv/bin/python benchmarks/ensemble.py [--tv 2186] [--test 2796] [--step 0.01]
        [--bootstrap 1000] [--naive-replicates 100]

Random predictions with the paper's set sizes (TV out-of-fold: one row per scan and
branch; test: every scan x 5 fold models x 4 models) and ensemble bands / analysis bins
in its proportions. Prints one JSON line per part:

    search    `search_ensemble_weights` (pooled AUC over the 101 x 101 grid, exact counts)
              vs scikit-learn's roc_auc_score at every grid point; same optimum asserted.
    metrics   `metrics_table` (every model, set, bin and fold; patient-bootstrap CIs with
              `--bootstrap` replicates, all metrics from one sort per slice) vs the same
              intervals for ONE slice by a loop of resample + binary_metrics, scaled to
              the slices the table computes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.metrics import roc_auc_score  # noqa: E402

from dsan_core.config import (  # noqa: E402
    RATIO_LARGE,
    RATIO_SMALL,
    RATIO_TINY,
    EnsembleConfig,
    EvaluationConfig,
)
from dsan_core.ensemble import search_ensemble_weights, weight_grid  # noqa: E402
from dsan_core.evaluation.metrics import binary_metrics  # noqa: E402
from dsan_core.evaluation.tables import metrics_table  # noqa: E402
from dsan_core.groups import BIN_HIGH, BIN_LOW, BIN_MID  # noqa: E402


def _cohort(n_tv: int, n_test: int, rng: np.random.Generator
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    n = n_tv + n_test
    scan = np.array([f"X-{i:016x}" for i in range(n)])
    label = np.where(rng.random(n) < 0.6, "COVID", "CAP")
    ratio = rng.choice([0.002, 0.015, 0.06], size=n, p=[0.3, 0.3, 0.4])
    groups = pd.DataFrame({
        "scan_id": scan, "label": label, "infection_ratio": ratio,
        "sampling_group": [f"{lab.lower()}_{'small' if r < RATIO_LARGE else 'large'}"
                           for lab, r in zip(label, ratio, strict=True)],
        "analysis_bin": np.select([ratio < RATIO_SMALL, ratio <= RATIO_LARGE],
                                  [BIN_LOW, BIN_MID], BIN_HIGH),
        "ensemble_band": np.where((ratio < RATIO_TINY) | (ratio > RATIO_LARGE), "extreme",
                                  "middle")})
    patients = np.array([f"P-{i // 2:016x}" for i in range(n)])  # ~1.4 scans / patient
    fold = np.where(np.arange(n) < n_tv, np.arange(n) % 5, -1)
    splits = pd.DataFrame({"scan_id": scan, "patient_id": patients,
                           "set": np.where(fold >= 0, "tv", "test"), "fold": fold})
    y = (label == "COVID").astype(float)
    rows = []
    for branch in ("rn34_us", "att_us", "att_ss", "att_ds"):
        signal = 0.8 * y + rng.normal(0, 0.6, n)
        p = 1 / (1 + np.exp(-(signal - 0.4) * 3))
        rows.append(pd.DataFrame({"scan_id": scan[:n_tv], "fold": fold[:n_tv],
                                  "branch": branch, "set": "val", "probability": p[:n_tv],
                                  "model_key": "k"}))
        for f in range(5):
            noisy = np.clip(p[n_tv:] + rng.normal(0, 0.05, n_test), 0, 1)
            rows.append(pd.DataFrame({"scan_id": scan[n_tv:], "fold": f, "branch": branch,
                                      "set": "test", "probability": noisy, "model_key": "k"}))
    return pd.concat(rows, ignore_index=True), groups, splits


def part_search(predictions: pd.DataFrame, groups: pd.DataFrame, step: float) -> dict:
    config = EnsembleConfig(search_step=step)
    started = time.perf_counter()
    found = search_ensemble_weights(predictions, groups, config)
    fast = time.perf_counter() - started
    val = predictions[predictions["set"] == "val"]
    wide = val.pivot(index="scan_id", columns="branch", values="probability")
    joined = wide.join(groups.set_index("scan_id"))
    y = (joined["label"] == "COVID").to_numpy()
    extreme = (joined["ensemble_band"] == "extreme").to_numpy()
    us, ss = joined["att_us"].to_numpy(), joined["att_ss"].to_numpy()
    grid = weight_grid(step)
    started = time.perf_counter()
    best = -1.0
    for we in grid:
        for wm in grid:
            w = np.where(extreme, we, wm)
            best = max(best, roc_auc_score(y, w * us + (1 - w) * ss))
    naive = time.perf_counter() - started
    assert abs(best - found.value) < 1e-9, (best, found.value)
    return {"part": "search", "tv_scans": int(len(joined)), "grid_points": int(grid.size ** 2),
            "ours_s": round(fast, 3), "sklearn_loop_s": round(naive, 2),
            "speed_up_x": round(naive / fast, 1), "best_auc": round(found.value, 4)}


def part_metrics(predictions: pd.DataFrame, groups: pd.DataFrame, splits: pd.DataFrame,
                 replicates: int, naive_replicates: int) -> dict:
    config = EvaluationConfig(bootstrap_samples=replicates)
    started = time.perf_counter()
    table = metrics_table(predictions, groups, splits, config)
    ours = time.perf_counter() - started
    slices = int(table.dropna(subset=["ci_low"])
                 .groupby(["model", "set", "aggregate", "fold", "bin"], dropna=False).ngroups)
    one = predictions[(predictions["set"] == "test") & (predictions["branch"] == "att_us")
                      & (predictions["fold"] == 0)].merge(groups, on="scan_id")
    one = one.merge(splits[["scan_id", "patient_id"]], on="scan_id")
    y = (one["label"] == "COVID").to_numpy(int)
    p = one["probability"].to_numpy()
    patients, index = np.unique(one["patient_id"], return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(patients))]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(naive_replicates):
        drawn = np.concatenate([members[i] for i in rng.integers(0, len(patients),
                                                                  len(patients))])
        binary_metrics(y[drawn], p[drawn])
    per_replicate = (time.perf_counter() - started) / naive_replicates
    naive = per_replicate * replicates * slices
    return {"part": "metrics", "rows": int(len(predictions)), "metric_rows": int(len(table)),
            "bootstrap_replicates": replicates, "slices_with_ci": slices,
            "ours_s": round(ours, 2), "loop_estimate_s": round(naive, 1),
            "speed_up_x": round(naive / ours, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tv", type=int, default=2186)
    parser.add_argument("--test", type=int, default=2796)
    parser.add_argument("--step", type=float, default=0.01)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--naive-replicates", type=int, default=100)
    args = parser.parse_args()
    print(f"device: cpu ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.2f}")
    predictions, groups, splits = _cohort(args.tv, args.test, np.random.default_rng(0))
    print(json.dumps(part_search(predictions, groups, args.step)), flush=True)
    print(json.dumps(part_metrics(predictions, groups, splits, args.bootstrap,
                                  args.naive_replicates)), flush=True)


if __name__ == "__main__":
    main()
