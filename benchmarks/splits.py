"""Benchmark: patient-level split + split audit on a large synthetic cohort.

Generates N scans (default 1,000,000) of about 0.6 N patients inside the benchmark,
times `make_splits` + `audit_splits` against the goal (<= 3 s, <= 2 GB peak RSS),
and times scikit-learn's StratifiedGroupKFold on a subsample as the baseline
(extrapolated linearly per scan, which flatters sklearn: its loop is superlinear).

    .venv/bin/python benchmarks/splits.py [--scans 1000000] [--sklearn-scans 50000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date

import numpy as np
import pandas as pd

from dsan_core.config import RATIO_LARGE, RATIO_SMALL, RATIO_TINY, SplitConfig
from dsan_core.groups import BIN_HIGH, BIN_LOW, BIN_MID
from dsan_core.splits import make_splits
from dsan_core.splits.audit import audit_splits

GOAL_SECONDS = 3.0
GOAL_RSS_GB = 2.0


def synthetic_cohort(n_scans: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scans and groups tables shaped like the pipeline's, in shuffled row order."""
    rng = np.random.default_rng(seed)
    n_patients = int(0.6 * n_scans)
    patient = np.concatenate([np.arange(n_patients),
                              rng.integers(0, n_patients, n_scans - n_patients)])
    rng.shuffle(patient)
    covid = rng.random(n_patients) < 0.6
    is_covid = covid[patient]
    day = rng.integers(0, 100, n_patients)[patient] + rng.integers(0, 10, n_scans)
    ratio = np.where(is_covid, rng.beta(0.6, 12, n_scans), rng.beta(0.3, 60, n_scans))
    scan_ids = np.array([f"scan-{i:08d}" for i in range(n_scans)], dtype=object)
    scans = pd.DataFrame({
        "scan_id": scan_ids,
        "patient_id": np.array([f"pat-{p:08d}" for p in patient], dtype=object),
        "study_id": np.array([f"study-{i:08d}" for i in range(n_scans)], dtype=object),
        "series_id": np.array([f"series-{i:08d}" for i in range(n_scans)], dtype=object),
        "label": np.where(is_covid, "COVID", "CAP"),
        "site": np.array(["site-a", "site-b", "site-c", "site-d"])[rng.integers(0, 4, n_patients)][
            patient],
        "manufacturer": np.array(["GE", "Siemens", "Philips"])[rng.integers(0, 3, n_scans)],
        "acquisition_date": pd.Timestamp(date(2020, 1, 1)) + pd.to_timedelta(day, unit="D"),
        "age_years": pd.array(rng.integers(18, 90, n_patients)[patient], dtype="Int16"),
        "sex": np.array(["F", "M"])[rng.integers(0, 2, n_patients)][patient],
        "volume_hash": np.array([f"{h:016x}" for h in rng.integers(0, 2**62, n_scans)],
                                dtype=object),
        "label_split": None,
    })
    groups = pd.DataFrame({
        "scan_id": scan_ids,
        "infection_ratio": ratio,
        "sampling_group": np.where(is_covid,
                                   np.where(ratio < RATIO_LARGE, "covid_small", "covid_large"),
                                   np.where(ratio <= RATIO_TINY, "cap_small", "cap_large")),
        "analysis_bin": np.where(ratio < RATIO_SMALL, BIN_LOW,
                                 np.where(ratio <= RATIO_LARGE, BIN_MID, BIN_HIGH)),
        "ensemble_band": np.where((ratio < RATIO_TINY) | (ratio > RATIO_LARGE), "extreme",
                                  "middle"),
    })
    order = rng.permutation(n_scans)
    return scans.iloc[order].reset_index(drop=True), groups.sample(frac=1.0, random_state=seed)


def peak_rss_gb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def sklearn_seconds(scans: pd.DataFrame, groups: pd.DataFrame, n_sub: int, n_folds: int
                    ) -> float:
    from sklearn.model_selection import StratifiedGroupKFold

    sub = scans.iloc[:n_sub]
    bins = groups.set_index("scan_id")["analysis_bin"].reindex(sub["scan_id"]).to_numpy()
    strata = sub["label"].to_numpy() + "|" + bins
    start = time.perf_counter()
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=0)
    for _ in folds.split(np.zeros(len(sub)), strata, sub["patient_id"].to_numpy()):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=int, default=1_000_000)
    parser.add_argument("--sklearn-scans", type=int, default=50_000)
    args = parser.parse_args()
    config = SplitConfig(policy="date", cutoff_date=date(2020, 3, 20))

    start = time.perf_counter()
    scans, groups = synthetic_cohort(args.scans, seed=0)
    print(f"generated {len(scans):,} scans / {scans['patient_id'].nunique():,} patients "
          f"in {time.perf_counter() - start:.1f} s; RSS so far {peak_rss_gb():.2f} GB")

    start = time.perf_counter()
    result = make_splits(scans, groups, config)
    split_s = time.perf_counter() - start
    start = time.perf_counter()
    report = audit_splits(result.table, scans, groups, config)
    audit_s = time.perf_counter() - start
    total = split_s + audit_s
    rss = peak_rss_gb()
    print(f"make_splits  {split_s:6.2f} s")
    print(f"audit_splits {audit_s:6.2f} s   (leakage: {report.has_leakage})")
    print(f"split+audit  {total:6.2f} s   goal <= {GOAL_SECONDS} s: "
          f"{'MET' if total <= GOAL_SECONDS else 'MISSED'}")
    print(f"peak RSS     {rss:6.2f} GB  goal <= {GOAL_RSS_GB} GB: "
          f"{'MET' if rss <= GOAL_RSS_GB else 'MISSED'} (whole process, data included)")

    start = time.perf_counter()
    audit_splits(result.table, scans, groups, config, against=result.table)
    print(f"audit with --against (extra)   {time.perf_counter() - start:6.2f} s")

    n_sub = min(args.sklearn_scans, args.scans)
    sk = sklearn_seconds(scans, groups, n_sub, config.n_folds)
    start = time.perf_counter()
    make_splits(scans.iloc[:n_sub], groups, config)
    ours_sub = time.perf_counter() - start
    print(f"sklearn StratifiedGroupKFold on {n_sub:,} scans: {sk:.2f} s; make_splits on the "
          f"same rows: {ours_sub:.3f} s (ratio {sk / max(ours_sub, 1e-9):.0f}x); sklearn "
          f"extrapolated to {args.scans:,} scans: >= {sk * args.scans / n_sub:.0f} s")
    print(report.tables["overview"].to_string())
    print(report.tables["ss_weights"].to_string())
    print(report.tables["balance"].to_string())


if __name__ == "__main__":
    main()
