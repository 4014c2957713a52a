"""How honest is the synthetic cohort? Untrained image features vs ground-truth lesion features.

    .venv/bin/python benchmarks/cohort_difficulty.py [--profile demo] [--patients 400]
        [--matrix N] [--slices N] [--workers N] [--folds 5] [--seed S] [--json-out FILE]

Builds the profile's synthetic cohort in memory (the phantoms `dsan synth` writes,
site pixel effects included, without DICOM) as one train-validation-like set: the
later set is switched off, so the class mix is `covid_fraction`, the sites are the
earlier ones and the ratios follow the paper's TV shares in one part of the cohort
and the pooled shares in the other (`balanced_fraction`). Per labelled scan it
computes two kinds of features.

Untrained image features, what a classifier gets for free from global intensity:
  mean      mean lung intensity of the windowed network input (HU clipped to
            [-1350, 150], scaled to [0, 1], averaged over the ground-truth lung);
  ratio     log10 of the ground-truth infection ratio;
  histogram the windowed values inside the lung in 12 equal bins, as fractions.
Ground-truth lesion features, what the lesion masks tell about the disease:
  infection HU mean and std, log10 ratio, bilaterality (share of the infection in the
  less-involved lung), peripheral fraction (infection voxels within 10 mm of the lung
  boundary), log number of connected components, mean depth below the lung boundary
  (mm), posterior position (0 front .. 1 back of the lung) and height (0 bottom .. 1
  top) of the infection's centroid.

A standardised logistic regression per feature set is cross-validated by patient
(GroupKFold); its out-of-fold AUC is printed overall and per analysis bin (by
ground-truth ratio), per bin both from the model fitted on all scans and from a
model fitted inside the bin; a single feature also without fitting, in whichever
direction separates better ("raw"). Issue 24's acceptance, printed as PASS / FAIL:
every untrained feature set <= 0.70 overall and <= 0.60 in every bin (the highest of
its fitted and raw AUCs), the ground-truth lesion features >= 0.85 overall.
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

from dsan_core.config import CT_WINDOW_LEVEL, CT_WINDOW_WIDTH, SynthConfig, load_profile  # noqa: E402,E501
from dsan_core.preprocessing.intensity import window_bounds  # noqa: E402
from dsan_core.synthetic import RATIO_BINS, StudyPlan, plan_cohort, ratio_bin  # noqa: E402
from dsan_core.synthetic.generate import study_phantom  # noqa: E402

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
LESION_FEATURES = ("hu_mean", "hu_std", "log_ratio", "bilaterality", "peripheral",
                   "log_components", "depth_mm", "posterior", "height")
HISTOGRAM_BINS = 12
HISTOGRAM = tuple(f"hist_{i:02d}" for i in range(HISTOGRAM_BINS))
WINDOW = window_bounds(CT_WINDOW_WIDTH, CT_WINDOW_LEVEL)
PERIPHERAL_MM = 10.0
#: Untrained feature sets (name -> columns) and the ground-truth lesion set.
UNTRAINED = {"mean lung intensity": ("mean",), "infection ratio": ("log_ratio",),
             "lung HU histogram": HISTOGRAM,
             "all untrained (LR)": ("mean", "log_ratio", *HISTOGRAM)}
LESIONS = {"ground-truth lesion masks": LESION_FEATURES}
MAX_UNTRAINED, MAX_UNTRAINED_BIN, MIN_LESIONS = 0.70, 0.60, 0.85


def image_features(hu: np.ndarray, lung: np.ndarray) -> dict[str, float]:
    """Mean windowed lung intensity and the lung's windowed histogram (fractions)."""
    lo, hi = WINDOW
    values = (np.clip(hu[lung > 0].astype(np.float64), lo, hi) - lo) / (hi - lo)
    counts, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    row = {"mean": float(values.mean())}
    row.update({name: float(c) / max(values.size, 1) for name, c in zip(HISTOGRAM, counts,
                                                                         strict=True)})
    return row


def lesion_features(hu: np.ndarray, lung: np.ndarray, infection: np.ndarray,
                    spacing: tuple[float, float, float]) -> dict[str, float]:
    """The ground-truth lesion features of one scan (see module doc)."""
    inside = (infection > 0) & (lung > 0)
    values = hu[inside].astype(np.float64)
    ratio = inside.sum() / max(int(lung.sum()), 1)
    zi, yi, xi = np.nonzero(inside)
    lung_z, lung_y, lung_x = np.nonzero(lung)
    midline = 0.5 * (lung_x.min() + lung_x.max()) if lung_x.size else hu.shape[2] / 2
    right, left = int((xi < midline).sum()), int((xi >= midline).sum())
    sx, sy, sz = spacing
    depth = ndimage.distance_transform_edt(lung > 0, sampling=(sz, sy, sx))
    _, components = ndimage.label(inside, structure=np.ones((3, 3, 3)))

    def position(coords: np.ndarray, extent: np.ndarray) -> float:
        if not coords.size or not extent.size:
            return 0.5
        return float((coords.mean() - extent.min()) / max(extent.max() - extent.min(), 1))

    return {
        "hu_mean": float(values.mean()) if values.size else -850.0,
        "hu_std": float(values.std()) if values.size else 0.0,
        "log_ratio": float(np.log10(max(ratio, 1e-6))),
        "bilaterality": min(right, left) / max(right + left, 1),
        "peripheral": float((depth[inside] <= PERIPHERAL_MM).mean()) if values.size else 0.0,
        "log_components": float(np.log1p(components)),
        "depth_mm": float(depth[inside].mean()) if values.size else 0.0,
        "posterior": position(yi, lung_y),
        "height": position(zi, lung_z),
    }


def _one(args: tuple[SynthConfig, StudyPlan]) -> dict[str, Any]:
    config, study = args
    phantom = study_phantom(config, study)
    row = lesion_features(phantom.hu, phantom.lung, phantom.infection, phantom.spacing)
    row.update(image_features(phantom.hu, phantom.lung))
    return {**row, "patient": study.patient_number, "label": int(study.diagnosis == "COVID"),
            "ratio": phantom.infection_ratio, "site": study.site, "shares": study.shares}


def _oof(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> np.ndarray:
    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return scores


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    if not 0 < y.sum() < len(y):
        return None
    return round(float(roc_auc_score(y, scores)), 3)


def _either_way(y: np.ndarray, values: np.ndarray) -> float | None:
    """A single feature's AUC without fitting, in whichever direction separates better."""
    auc = _auc(y, values)
    return None if auc is None else round(max(auc, 1.0 - auc), 3)


def _aucs(x: np.ndarray, y: np.ndarray, groups: np.ndarray, bins: np.ndarray,
          folds: int) -> dict[str, Any]:
    """Overall AUC, per bin from the pooled model, and per bin from a model fitted inside it.

    A single feature also gets its AUC without fitting ("raw"), direction-free: a
    cross-validated model of a weak feature can score below 0.5 by chance of the
    folds, which would hide what the feature carries.
    """
    pooled = _oof(x, y, groups, folds)
    out: dict[str, Any] = {"overall": _auc(y, pooled), "pooled_model": {}, "within_bin": {}}
    for name in RATIO_BINS:
        sel = bins == name
        out["pooled_model"][name] = _auc(y[sel], pooled[sel])
        enough = sel.sum() >= 2 * folds and 0 < y[sel].sum() < sel.sum()
        out["within_bin"][name] = (_auc(y[sel], _oof(x[sel], y[sel], groups[sel], folds))
                                   if enough else None)
    if x.shape[1] == 1:
        out["raw"] = {"overall": _either_way(y, x[:, 0])}
        for name in RATIO_BINS:
            sel = bins == name
            out["raw"][name] = _either_way(y[sel], x[sel, 0])
    return out


def _worst(aucs: dict[str, Any]) -> float:
    """The highest overall AUC, fitted or raw."""
    values = [aucs["overall"], aucs.get("raw", {}).get("overall")]
    return max((v for v in values if v is not None), default=float("nan"))


def _worst_bin(aucs: dict[str, Any]) -> float:
    """The highest AUC in any bin, pooled model, within-bin model or raw."""
    values = [v for part in ("pooled_model", "within_bin", "raw")
              for k, v in aucs.get(part, {}).items() if k != "overall" and v is not None]
    return max(values) if values else float("nan")


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
    start = time.perf_counter()
    results = {name: _aucs(np.array([[r[c] for c in columns] for r in rows]), y, groups, bins,
                           args.folds)
               for name, columns in {**UNTRAINED, **LESIONS}.items()}
    fit_s = time.perf_counter() - start
    counts = {name: {"COVID": int(((bins == name) & (y == 1)).sum()),
                     "CAP": int(((bins == name) & (y == 0)).sum())} for name in RATIO_BINS}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"{len(rows)} scans of {args.patients} patients ({config.balanced_fraction:.0%} of each "
          f"class with pooled ratio shares), {config.n_slices}x{config.matrix}x{config.matrix}; "
          f"phantoms + features {build_s:.1f} s ({args.workers} workers), regressions "
          f"{fit_s:.1f} s; {machine}")
    print("scans per bin (COVID/CAP): "
          + ", ".join(f"{b} {c['COVID']}/{c['CAP']}" for b, c in counts.items()))
    print(f"{'AUC (patient-grouped ' + str(args.folds) + '-fold CV)':<31} overall   "
          + "  ".join(f"{b:>11}" for b in RATIO_BINS) + "   (pooled model / fit within bin)")
    for name, aucs in results.items():
        cells = "  ".join(f"{_fmt(aucs['pooled_model'][b])} / {_fmt(aucs['within_bin'][b])}"
                          for b in RATIO_BINS)
        print(f"  {name:<29} {_fmt(aucs['overall']):>7}   {cells}")
        if "raw" in aucs:
            raw = aucs["raw"]
            cells = "  ".join(f"{_fmt(raw[b]):>13}" for b in RATIO_BINS)
            print(f"    {'raw, either direction':<27} {_fmt(raw['overall']):>7}   {cells}")
    verdicts = []
    for name in UNTRAINED:
        aucs = results[name]
        worst = _worst(aucs)
        verdicts.append((f"{name}: overall {worst:.3f} <= {MAX_UNTRAINED}",
                         worst <= MAX_UNTRAINED))
        worst = _worst_bin(aucs)
        verdicts.append((f"{name}: every bin {worst:.3f} <= {MAX_UNTRAINED_BIN}",
                         worst <= MAX_UNTRAINED_BIN))
    for name in LESIONS:
        overall = results[name]["overall"]
        verdicts.append((f"{name}: overall {_fmt(overall)} >= {MIN_LESIONS}",
                         overall is not None and overall >= MIN_LESIONS))
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    features = (*LESION_FEATURES, "mean")
    means = {f: {"COVID": round(float(np.mean([r[f] for r in rows if r["label"] == 1])), 3),
                 "CAP": round(float(np.mean([r[f] for r in rows if r["label"] == 0])), 3)}
             for f in features}
    print("class means: " + "; ".join(f"{f} {m['COVID']} vs {m['CAP']}" for f, m in means.items()))
    if args.json_out:
        report = {"profile": args.profile, "patients": args.patients, "scans": len(rows),
                  "geometry": [config.n_slices, config.matrix, config.matrix],
                  "balanced_fraction": config.balanced_fraction, "aucs": results,
                  "scans_per_bin": counts, "class_means": means,
                  "acceptance": {text: ok for text, ok in verdicts},
                  "build_seconds": round(build_s, 1), "workers": args.workers,
                  "machine": machine, "scans_rows": rows}
        args.json_out.write_text(json.dumps(report, indent=2))


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
