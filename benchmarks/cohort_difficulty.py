"""How hard is the synthetic cohort? A hand-feature logistic regression on ground truth.

    .venv/bin/python benchmarks/cohort_difficulty.py [--profile demo] [--patients 400]
        [--matrix N] [--slices N] [--workers N] [--folds 5] [--seed S] [--json-out FILE]

Builds the profile's synthetic cohort in memory (the phantoms `dsan synth` writes,
without DICOM), as one train-validation-like set: the later set is switched off,
so the class mix is `covid_fraction` and the ratios follow the paper's TV shares.
Per labelled scan it computes six features from the GROUND-TRUTH masks: mean and
standard deviation of the infection's HU, log10 infection ratio, bilaterality (share
of the infection in the less-involved lung), peripheral fraction (share of infection
voxels within 10 mm of the lung's boundary) and log number of connected components.
A standardised logistic regression is cross-validated by patient (GroupKFold), and
the out-of-fold AUC is reported overall and per analysis bin (by ground-truth ratio).

Issue 11's target: overall AUC 0.80-0.92, clearly lower in the < 0.005 bin than in
the > 0.030 bin (small infections are the hard cases). A baseline in the same run:
the infection ratio alone (no appearance).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from dsan_core.config import SynthConfig, load_profile  # noqa: E402
from dsan_core.synthetic import RATIO_BINS, StudyPlan, plan_cohort, ratio_bin  # noqa: E402
from dsan_core.synthetic.generate import study_phantom  # noqa: E402

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
FEATURES = ("hu_mean", "hu_std", "log_ratio", "bilaterality", "peripheral", "log_components")
PERIPHERAL_MM = 10.0


def scan_features(hu: np.ndarray, lung: np.ndarray, infection: np.ndarray,
                  spacing: tuple[float, float, float]) -> dict[str, float]:
    """The six hand features of one scan from its ground-truth masks (see module doc)."""
    inside = (infection > 0) & (lung > 0)
    values = hu[inside].astype(np.float64)
    ratio = inside.sum() / max(int(lung.sum()), 1)
    x = np.nonzero(inside)[2]
    lung_x = np.nonzero(lung)[2]
    midline = 0.5 * (lung_x.min() + lung_x.max()) if lung_x.size else hu.shape[2] / 2
    right, left = int((x < midline).sum()), int((x >= midline).sum())
    sx, sy, sz = spacing
    depth = ndimage.distance_transform_edt(lung > 0, sampling=(sz, sy, sx))
    _, components = ndimage.label(inside, structure=np.ones((3, 3, 3)))
    return {
        "hu_mean": float(values.mean()) if values.size else -850.0,
        "hu_std": float(values.std()) if values.size else 0.0,
        "log_ratio": float(np.log10(max(ratio, 1e-6))),
        "bilaterality": min(right, left) / max(right + left, 1),
        "peripheral": float((depth[inside] <= PERIPHERAL_MM).mean()) if values.size else 0.0,
        "log_components": float(np.log1p(components)),
    }


def _one(args: tuple[SynthConfig, StudyPlan]) -> dict[str, Any]:
    config, study = args
    phantom = study_phantom(config, study)
    row = scan_features(phantom.hu, phantom.lung, phantom.infection, phantom.spacing)
    return {**row, "patient": study.patient_number, "label": int(study.diagnosis == "COVID"),
            "ratio": phantom.infection_ratio}


def _oof(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> np.ndarray:
    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return scores


def _aucs(y: np.ndarray, scores: np.ndarray, bins: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"overall": round(float(roc_auc_score(y, scores)), 3)}
    for name in RATIO_BINS:
        sel = bins == name
        both = sel.any() and 0 < y[sel].sum() < sel.sum()
        out[name] = round(float(roc_auc_score(y[sel], scores[sel])), 3) if both else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--matrix", type=int, help="override the profile's matrix")
    parser.add_argument("--slices", type=int, help="override the profile's slice count")
    parser.add_argument("--seed", type=int, help="override the profile's synth seed")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    base = load_profile(PROFILES / f"{args.profile}.yaml").synth
    update: dict[str, Any] = {"n_patients": args.patients, "later_cutoff": None,
                              "include_broken": False}
    for key, value in (("matrix", args.matrix), ("n_slices", args.slices), ("seed", args.seed)):
        if value is not None:
            update[key] = value
    if args.matrix is not None:
        update["fov_mm"] = base.fov_mm  # keep the field of view: coarser pixels
    config = base.model_copy(update=update)
    studies = plan_cohort(config).cohort_studies()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(_one, [(config, s) for s in studies], chunksize=4))
    build_s = time.perf_counter() - start

    y = np.array([r["label"] for r in rows])
    groups = np.array([r["patient"] for r in rows])
    bins = np.array([ratio_bin(r["ratio"]) for r in rows])
    x = np.array([[r[f] for f in FEATURES] for r in rows])
    full = _aucs(y, _oof(x, y, groups, args.folds), bins)
    ratio_only = _aucs(y, _oof(x[:, [FEATURES.index("log_ratio")]], y, groups, args.folds), bins)
    counts = {name: {"COVID": int(((bins == name) & (y == 1)).sum()),
                     "CAP": int(((bins == name) & (y == 0)).sum())} for name in RATIO_BINS}
    report = {
        "profile": args.profile, "patients": args.patients, "scans": len(rows),
        "geometry": [config.n_slices, config.matrix, config.matrix],
        "features": list(FEATURES), "auc_all_features": full, "auc_ratio_only": ratio_only,
        "scans_per_bin": counts,
        "class_means": {f: {"COVID": round(float(x[y == 1, i].mean()), 3),
                            "CAP": round(float(x[y == 0, i].mean()), 3)}
                        for i, f in enumerate(FEATURES)},
        "build_seconds": round(build_s, 1), "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    print(f"{len(rows)} scans of {args.patients} patients, {config.n_slices}x{config.matrix}x"
          f"{config.matrix}, phantoms + features in {build_s:.1f} s ({args.workers} workers; "
          f"{report['machine']})")
    for name, aucs in (("all six features", full), ("ratio only (baseline)", ratio_only)):
        per_bin = ", ".join(f"{b} {aucs[b]}" for b in RATIO_BINS)
        print(f"AUC {name}: overall {aucs['overall']}; per bin: {per_bin}")
    print("scans per bin (COVID/CAP): "
          + ", ".join(f"{b} {c['COVID']}/{c['CAP']}" for b, c in counts.items()))
    print("class means: " + "; ".join(f"{f} {m['COVID']} vs {m['CAP']}"
                                      for f, m in report["class_means"].items()))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
