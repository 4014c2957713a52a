"""Does a profile's classifier learn? Pooled out-of-fold AUC per branch and seed, over a
data root's pre-processed inputs, without Prefect (the same cases and `train_classifier`
as the training stage, nothing cached, nothing written to the data root).

    .venv/bin/python benchmarks/classifier_cohort.py --data-root ./dsan-data \
        [--profile profiles/demo.yaml] [--seeds 0 1 2] [--branches att_us att_ss] \
        [--device auto|cpu|cuda] [--epochs N] [--set FIELD=VALUE ...] [--fp32] \
        [--json results.json]

For each seed (TrainConfig.seed, from which every (fold, branch) seed derives) and
branch: train the five fold models, predict each fold's validation scans with its best
(calibrated, where the profile says so) model and the test scans with every fold model.
Prints one JSON line per (seed, branch): pooled out-of-fold AUC (what the demo's goal
is measured on), the mean of the per-fold AUCs, the mean AUC of each fold model on its
own training scans (does it fit them?), the test AUC of the fold-averaged
probability, best epochs and seconds; the out-of-fold maps' (attention; Grad-CAM for
RN34 + US) lift over the lung-uniform chance on the validation COVID scans (mass
inside the infection / the infection's share of the lung, `score_attention`, as the
evaluation's faithfulness; 2x is the demo's goal). `--set` overrides TrainConfig
fields for an experiment (YAML values: `--set layers=[2,2,2,2] attention_lambda=2`);
then the mean and spread over the seeds. First,
the evaluation stage's untrained baselines with the same folds (mean lung intensity of
the input, the infection ratio, hand features; `dsan_core.evaluation.baselines`). An
"ds_equal" line averages att_us and att_ss with equal weights (the ensemble stage
searches the weights; this is only its midpoint).

Needs the tables `splits`, `groups` and `preprocessed` and the arrays they name: a data
root after `dsan run` (or `dsan preprocess`). Runs where it is started and says on what.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from dsan_core.classifier import (  # noqa: E402
    ClassifierCase,
    branch_seed,
    cases_from_tables,
    predict_probabilities,
    train_classifier,
)
from dsan_core.classifier.data import COVID  # noqa: E402
from dsan_core.config import EvaluationConfig, TrainConfig, load_profile  # noqa: E402
from dsan_core.errors import ConfigError  # noqa: E402
from dsan_core.evaluation.attention_maps import scored_map  # noqa: E402
from dsan_core.evaluation.baselines import FeatureCase, compute_baselines  # noqa: E402
from dsan_core.groups import LABEL_COVID  # noqa: E402
from dsan_core.splits import fold_scans  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _open(path: Path) -> np.ndarray:
    # storage.volumes.open_npy does the same, but storage.volumes imports SimpleITK,
    # which the GPU image lacks: this script must run there.
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_cases(data_root: Path
               ) -> tuple[pd.DataFrame, dict[str, ClassifierCase], dict[str, Path]]:
    """The split table, one case per pre-processed scan (as the training stage) and
    each scan's lung mask on the input grid."""
    tables = data_root / "tables"
    splits = pd.read_parquet(tables / "splits.parquet")
    groups = pd.read_parquet(tables / "groups.parquet").set_index("scan_id")
    inputs = pd.read_parquet(tables / "preprocessed.parquet").set_index("scan_id")
    patients = dict(zip(splits["scan_id"].astype(str), splits["patient_id"].astype(str),
                        strict=True))
    cases = cases_from_tables([str(s) for s in inputs.index], groups, inputs,
                              lambda path: partial(_open, data_root / path), patients)
    lungs = {str(scan): data_root / path for scan, path in inputs["lung_path"].items()}
    return splits, cases, lungs


def untrained_baselines(data_root: Path, splits: pd.DataFrame) -> list[dict[str, Any]]:
    """The evaluation stage's untrained baselines (`dsan_core.evaluation.baselines`: mean
    lung intensity, infection ratio, hand features; logistic regressions with the same
    folds): pooled out-of-fold AUC on TV and the fold-averaged test AUC of each."""
    tables = data_root / "tables"
    groups = pd.read_parquet(tables / "groups.parquet")
    inputs = pd.read_parquet(tables / "preprocessed.parquet")
    cases = [FeatureCase(str(row.scan_id), partial(_open, data_root / row.input_path),
                         partial(_open, data_root / row.lung_path))
             for row in inputs.itertuples()]
    bins = EvaluationConfig().baseline_histogram_bins
    predictions = compute_baselines(cases, groups, splits, bins).predictions
    labels = (groups.set_index("scan_id")["label"] == LABEL_COVID).astype(int)
    lines = []
    for name, rows in predictions.groupby("branch", sort=True):
        val = rows[rows["set"] == "val"]
        test = rows[rows["set"] == "test"].groupby("scan_id")["probability"].mean()
        lines.append({"baseline": str(name), "untrained": True,
                      "pooled_oof_auc": round(_auc(list(labels.loc[val["scan_id"]]),
                                                   list(val["probability"])), 4),
                      "test_auc": round(_auc(list(labels.loc[test.index]), list(test)), 4)})
    return lines


def _auc(labels: list[int], scores: list[float]) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


@dataclass(frozen=True)
class BranchRun:
    """One branch's five fold models: the printed line and the predictions behind it."""

    line: dict[str, Any]
    oof_labels: list[int]
    oof_scores: np.ndarray
    test_labels: list[int]
    test_scores: np.ndarray | None  # the fold models' mean probability


def attention_lift(model: Any, branch: str, cases: list[ClassifierCase],
                   lungs: dict[str, Path], device: torch.device, config: TrainConfig
                   ) -> list[float]:
    """Lift over the lung-uniform chance of each COVID case's map, the kind the
    evaluation judges the branch by (`MAP_KIND`: attention, Grad-CAM for the RN34
    baseline); maps without an infection in the lung are left out."""
    lifts = []
    for case in cases:
        if case.label != COVID:
            continue
        _, score = scored_map(model, branch, case, np.asarray(case.infection()),
                              np.asarray(_open(lungs[case.scan_id])), config, device)
        if np.isfinite(score.lift):
            lifts.append(score.lift)
    return lifts


def run_branch(splits: pd.DataFrame, cases: dict[str, ClassifierCase], config: TrainConfig,
               branch: str, device: torch.device, lungs: dict[str, Path]) -> BranchRun:
    folds = sorted(int(f) for f in splits["fold"].dropna().unique())
    oof_labels: list[int] = []
    oof_scores: list[float] = []
    fold_aucs, train_aucs, best_epochs = [], [], []
    test_probs: list[np.ndarray] = []
    test_labels: list[int] = []
    lifts: list[float] = []
    started = time.perf_counter()
    for fold in folds:
        scans = fold_scans(splits, fold)
        train = [cases[s] for s in scans.train if s in cases]
        val = [cases[s] for s in scans.val if s in cases]
        test = [cases[s] for s in scans.test if s in cases]
        result = train_classifier(train, config, branch=branch,
                                  seed=branch_seed(config.seed, fold, branch), device=device,
                                  resume=None, on_epoch_end=lambda checkpoint, report: None,
                                  log=lambda message: None, fold=fold)
        predict = partial(predict_probabilities, result.model, device=device,
                          batch_size=config.val_batch_size,
                          mixed_precision=config.mixed_precision,
                          channels_last=config.channels_last_3d)
        probs = predict(val)
        labels = [c.label for c in val]
        oof_labels += labels
        oof_scores += [float(p) for p in probs]
        fold_aucs.append(_auc(labels, list(probs)))
        # How well the kept model fits its own training scans: near 1 with a low
        # out-of-fold AUC is over-fitting, near the out-of-fold AUC under-fitting.
        train_aucs.append(_auc([c.label for c in train], list(predict(train))))
        best_epochs.append(result.best_epoch)
        lifts += attention_lift(result.model, branch, val, lungs, device, config)
        if test:
            test_probs.append(predict(test))
            test_labels = [c.label for c in test]
    test_scores = np.mean(test_probs, axis=0) if test_probs else None
    line = {"pooled_oof_auc": round(_auc(oof_labels, oof_scores), 4),
            "mean_fold_auc": round(float(np.nanmean(fold_aucs)), 4),
            "fold_aucs": [round(a, 3) for a in fold_aucs],
            "mean_train_auc": round(float(np.nanmean(train_aucs)), 4),
            "test_auc": round(_auc(test_labels, list(test_scores)), 4)
            if test_scores is not None else float("nan"),
            "attention_lift": round(float(np.mean(lifts)), 3) if lifts else float("nan"),
            "n_lift_maps": len(lifts),
            "best_epochs": best_epochs, "seconds": round(time.perf_counter() - started, 1),
            "n_oof": len(oof_labels), "n_test": len(test_labels)}
    return BranchRun(line, oof_labels, np.asarray(oof_scores), test_labels, test_scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--profile", type=Path, default=ROOT / "profiles" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--branches", nargs="+", default=["att_us", "att_ss"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="override TrainConfig fields (YAML values)")
    parser.add_argument("--fp32", action="store_true",
                        help="no bf16 autocast on CUDA (what the CPU computes)")
    parser.add_argument("--json", type=Path, default=None, help="append each line here too")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    overrides: dict[str, Any] = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected FIELD=VALUE, found {item!r}")
        overrides[field] = yaml.safe_load(value)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    # The profile loader merges and validates them (an unknown field fails naming it).
    try:
        base = load_profile(args.profile, {"train": overrides}).train
    except ConfigError as error:
        parser.error(str(error))
    what = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    splits, cases, lungs = load_cases(args.data_root)

    def emit(line: dict[str, Any]) -> None:
        text = json.dumps(line)
        print(text, flush=True)
        if args.json is not None:
            with args.json.open("a") as out:
                out.write(text + "\n")

    emit({"profile": args.profile.stem, "device": what, "torch": torch.__version__,
          "n_cases": len(cases), "fp32": args.fp32, "train": base.model_dump(mode="json")})
    for line in untrained_baselines(args.data_root, splits):
        emit(line)
    results: dict[str, list[float]] = {}
    for seed in args.seeds:
        update: dict[str, Any] = {"seed": seed}
        if args.fp32:
            update["mixed_precision"] = False
        config = base.model_copy(update=update)
        by_branch: dict[str, BranchRun] = {}
        for branch in args.branches:
            run = run_branch(splits, cases, config, branch, device, lungs)
            by_branch[branch] = run
            results.setdefault(branch, []).append(run.line["pooled_oof_auc"])
            emit({"seed": seed, "branch": branch, **run.line})
        if {"att_us", "att_ss"} <= by_branch.keys():
            # Both branches predict the same folds' scans in the same order.
            us, ss = by_branch["att_us"], by_branch["att_ss"]
            auc = round(_auc(us.oof_labels, list((us.oof_scores + ss.oof_scores) / 2)), 4)
            test_auc = (_auc(us.test_labels, list((us.test_scores + ss.test_scores) / 2))
                        if us.test_scores is not None and ss.test_scores is not None
                        else float("nan"))
            results.setdefault("ds_equal", []).append(auc)
            emit({"seed": seed, "branch": "ds_equal", "pooled_oof_auc": auc,
                  "test_auc": round(test_auc, 4)})
    for branch, aucs in results.items():
        emit({"summary": branch, "seeds": args.seeds, "pooled_oof_auc": aucs,
              "mean": round(statistics.fmean(aucs), 4),
              "sd": round(statistics.stdev(aucs), 4) if len(aucs) > 1 else 0.0,
              "min": min(aucs), "device": what})


if __name__ == "__main__":
    main()
