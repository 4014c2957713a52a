"""The paper's claims, measured: Tables II and III beside the paper's, and whether each claim holds.

    .venv/bin/python benchmarks/paper_tables.py --data-root DIR          # an evaluated root
    .venv/bin/python benchmarks/paper_tables.py --profile demo [--patients N] [--root DIR]
        [--seeds 0 1 2] [--cohort-seed N] [--json-out FILE]

With `--profile`, generates that profile's synthetic cohort (`--patients` to resize it)
and runs the whole protocol on it first (`dsan synth` + `dsan run`, the commands a user
types: segmentation, splits, five folds x three trained branches, ensemble weight
search, evaluation). Then, from the data root's tables:

- Tables II and III (TV pooled out-of-fold; test mean ± std over the 5 fold models),
  each number beside the paper's, and 95 % patient-bootstrap intervals for AUC;
- the paper's claims, each with the numbers behind it and "holds" / "does NOT hold":
  1. attention beats no attention: Attention RN34 + US AUC > RN34 + US (TV, test);
  2. size-balanced sampling helps the hard cases: against US, SS has higher
     sensitivity on COVID with a small infection (< 0.005) and higher specificity on
     CAP with a large one (> 0.030) (TV, test; undefined where a bin lacks the class);
  3. the dual-sampling ensemble is at least as good as either branch:
     DS AUC >= max(US, SS) - 0.005 (TV with the nested weights, `att_ds_nested`, since
     the in-sample DS saw its own TV rows; test: the DS fold models' mean);
  4. the networks against the ground-truth lesion features (the nine of
     `benchmarks/cohort_difficulty.py`, from the pipeline's CT and its ground-truth
     masks: what a classifier that saw the lesions exactly could reach, an upper
     reference rather than a baseline): a logistic regression out-of-fold on TV with
     the pipeline's folds, and trained on all TV and scored on the same test scans. The
     evaluation's own untrained baselines (`base_*` rows of the metrics table) are
     printed beside it.

`--cohort-seed N` draws another cohort of the same profile (its `synth.seed`: other
patients, lesions and scanners' noise, the same plan): a claim that holds on one draw
only is a property of that draw. Each draw needs its own `--root` (a `cohort/` made by
another profile, size or cohort seed is refused, not reused).

With `--seeds`, the protocol runs once per classifier seed (`train.seed`) on the same
cohort and data root: the stages before training come from the stage cache, so each
seed retrains the 15 models and re-runs the ensemble and the evaluation. Each claim is
then printed per seed, with its mean and [min, max] over the seeds and how many seeds it
holds in, and so is the demo's goal (issue 24): each attention branch's pooled
out-of-fold AUC minus the best untrained baseline's (the evaluation's `base_*` rows),
and the attention maps' mass inside the infection against the lung-uniform chance mass
(faithfulness, all test COVID scans). A `cohort/` already under `--root` is reused.

Synthetic data: a claim that does not hold here says something about this cohort and
budget, not about the paper. Runs on the device the profile names.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import yaml  # noqa: E402
from cohort_difficulty import LESION_FEATURES as FEATURES  # noqa: E402
from cohort_difficulty import lesion_features  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from dsan_core.evaluation.bootstrap import (  # noqa: E402
    patient_bootstrap_weights,
    percentile_interval,
    weighted_metrics,
)
from dsan_core.evaluation.metrics import binary_metrics  # noqa: E402
from dsan_core.evaluation.report_tables import table_ii, table_iii, text_lines  # noqa: E402
from storage.layout import DataLayout  # noqa: E402
from storage.tables import read_table, table_exists  # noqa: E402
from storage.volumes import read_image  # noqa: E402

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
SMALL, LARGE, ALL = "<0.005", ">0.030", "all"
TOLERANCE = 0.005


def _derived_profile(profile: str, root: Path, *, train_seed: int | None = None,
                     cohort_seed: int | None = None) -> str:
    """A copy of `profile` with train.seed and / or synth.seed set (same profile name, so
    the stages before training keep their cache keys across classifier seeds)."""
    source = Path(profile) if Path(profile).suffix in {".yaml", ".yml"} else (
        PROFILES / f"{profile}.yaml")
    raw = yaml.safe_load(source.read_text()) or {}
    raw.setdefault("profile", source.stem)
    name = [source.stem]
    if cohort_seed is not None:
        raw.setdefault("synth", {})["seed"] = cohort_seed
        name.append(f"cohort{cohort_seed}")
    if train_seed is not None:
        raw.setdefault("train", {})["seed"] = train_seed
        name.append(f"seed{train_seed}")
    path = root / ("-".join(name) + ".yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _cohort_conflict(root: Path, made_by: dict[str, Any]) -> str | None:
    """Why the `cohort/` under `root` cannot be reused (another profile, size or cohort
    seed made it), or None; records what makes a new one."""
    record = root / "cohort.json"
    if record.exists():
        found = json.loads(record.read_text())
        return (None if found == made_by else
                f"{root / 'cohort'} was made with {found}, not {made_by}: give another --root")
    if not (root / "cohort" / "labels.csv").exists():
        root.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(made_by))
    return None


def _run_protocol(profile: str, patients: int | None, root: Path) -> float:
    dsan = str(Path(sys.executable).parent / "dsan")
    cohort = root / "cohort"
    started = time.perf_counter()
    if not (cohort / "labels.csv").exists():
        synth = [dsan, "synth", "--profile", profile, "--out", str(cohort)]
        if patients is not None:
            synth += ["--patients", str(patients)]
        subprocess.run(synth, check=True)
    subprocess.run([dsan, "run", "--profile", profile, "--dicom-root", str(cohort / "dicom"),
                    "--labels", str(cohort / "labels.csv"), "--masks", str(cohort / "masks"),
                    "--data-root", str(root / "data")], check=True)
    return time.perf_counter() - started


def _goal(layout: DataLayout, metrics: pd.DataFrame) -> dict[str, Any]:
    """Issue 24's goal for one seed: attention AUC lift over the best untrained baseline
    (TV pooled out-of-fold) and the attention maps' mass inside the infection over the
    lung-uniform chance mass."""
    tv = {m: _value(metrics, m, "tv", ALL, "auc", "pooled")["value"]
          for m in ("att_us", "att_ss", "base_intensity", "base_ratio", "base_hand")}
    best_base = max(tv[m] for m in ("base_intensity", "base_ratio", "base_hand"))
    out: dict[str, Any] = {f"{m}_minus_best_baseline": round(tv[m] - best_base, 4)
                           for m in ("att_us", "att_ss")}
    out["best_baseline_auc"] = best_base
    if table_exists(layout, "faithfulness"):
        scores = read_table(layout, "faithfulness")
        for model in ("att_us", "att_ss"):
            own = scores[scores["model"] == model]
            if len(own):
                out[f"{model}_mass_over_chance"] = round(
                    float(own["mass_inside"].mean() / own["chance"].mean()), 3)
    return out


def _over_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Each claim's numbers and verdict per seed, their mean and [min, max], and the goal."""
    seeds = sorted(per_seed)
    claims = []
    for i, first in enumerate(per_seed[seeds[0]]["claims"]):
        numbers = {key: [per_seed[s]["claims"][i]["numbers"][key] for s in seeds]
                   for key in first["numbers"]}
        verdicts = [per_seed[s]["claims"][i]["holds"] for s in seeds]
        claims.append({"claim": first["claim"], "seeds": seeds,
                       "holds_in": f"{sum(v is True for v in verdicts)} of {len(seeds)}",
                       "numbers": {key: _spread(values) for key, values in numbers.items()}})
    goal_keys = per_seed[seeds[0]]["goal"].keys()
    goal = {key: _spread([per_seed[s]["goal"].get(key, float("nan")) for s in seeds])
            for key in goal_keys}
    return {"seeds": seeds, "claims": claims, "goal": goal}


def _spread(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if v is not None and not np.isnan(v)]
    if not finite:
        return {"per_seed": values}
    return {"per_seed": values, "mean": round(float(np.mean(finite)), 4),
            "interval": [round(min(finite), 4), round(max(finite), 4)]}


def _value(metrics: pd.DataFrame, model: str, set_name: str, bin_name: str, metric: str,
           aggregate: str) -> dict[str, Any]:
    row = metrics[(metrics["model"] == model) & (metrics["set"] == set_name)
                  & (metrics["bin"] == bin_name) & (metrics["metric"] == metric)
                  & (metrics["aggregate"] == aggregate)]
    if row.empty:
        return {"value": float("nan")}
    first = row.iloc[0]
    out: dict[str, Any] = {"value": round(float(first["value"]), 4)}
    if not pd.isna(first["ci_low"]):
        out["ci"] = [round(float(first["ci_low"]), 4), round(float(first["ci_high"]), 4)]
    return out


def _both(metrics: pd.DataFrame, model: str, bin_name: str, metric: str) -> dict[str, Any]:
    return {"tv": _value(metrics, model, "tv", bin_name, metric, "pooled"),
            "test": _value(metrics, model, "test", bin_name, metric, "mean")}


def _claims(metrics: pd.DataFrame) -> list[dict[str, Any]]:
    def get(model: str, set_name: str, bin_name: str = ALL, metric: str = "auc") -> float:
        aggregate = "pooled" if set_name == "tv" else "mean"
        return _value(metrics, model, set_name, bin_name, metric, aggregate)["value"]

    claims = []
    for set_name in ("tv", "test"):
        att, plain = get("att_us", set_name), get("rn34_us", set_name)
        claims.append({"claim": f"attention beats no attention (AUC, {set_name})",
                       "numbers": {"att_us": att, "rn34_us": plain},
                       "holds": bool(att > plain)})
    for bin_name, metric, who in ((SMALL, "sensitivity", "COVID, infection < 0.005"),
                                  (LARGE, "specificity", "CAP, infection > 0.030")):
        for set_name in ("tv", "test"):
            ss, us = (get(m, set_name, bin_name, metric) for m in ("att_ss", "att_us"))
            claims.append({"claim": f"SS raises {metric} on {who} against US ({set_name})",
                           "numbers": {"att_ss": ss, "att_us": us},
                           "holds": bool(ss > us) if not np.isnan(ss + us) else None})
    for set_name in ("tv", "test"):
        # On TV the nested DS (weights from the other folds); the in-sample one is shown.
        model = "att_ds_nested" if set_name == "tv" else "att_ds"
        ds, us, ss = (get(m, set_name) for m in (model, "att_us", "att_ss"))
        numbers = {model: ds, "att_us": us, "att_ss": ss}
        if set_name == "tv":
            numbers["att_ds (in-sample)"] = get("att_ds", set_name)
        claims.append({"claim": f"DS AUC >= max(US, SS) - {TOLERANCE} ({set_name})",
                       "numbers": numbers, "holds": bool(ds >= max(us, ss) - TOLERANCE)})
    return claims


def _features(layout: DataLayout) -> pd.DataFrame:
    scans = read_table(layout, "scans").set_index("scan_id")
    masks = read_table(layout, "infection").set_index("scan_id")
    rows = []
    for scan_id in masks.index:
        image = read_image(layout.resolve(scans.loc[scan_id, "volume_path"]))
        hu = sitk.GetArrayFromImage(image)
        lung, infection = (sitk.GetArrayFromImage(read_image(layout.resolve(
            masks.loc[scan_id, column]))) for column in ("lung_path", "infection_path"))
        rows.append({"scan_id": scan_id, **lesion_features(hu, lung, infection,
                                                             tuple(image.GetSpacing()))})
    return pd.DataFrame(rows)


def _auc_with_ci(y: np.ndarray, p: np.ndarray, patients: np.ndarray) -> dict[str, Any]:
    auc = binary_metrics(y, p)["auc"]
    weights = patient_bootstrap_weights(patients, 1000, np.random.default_rng(0))
    low, high = percentile_interval(weighted_metrics(y, p, weights)["auc"])
    return {"value": round(float(auc), 4), "ci": [round(low, 4), round(high, 4)]}


def _hand_features(layout: DataLayout, metrics: pd.DataFrame) -> dict[str, Any]:
    features = _features(layout)
    splits = read_table(layout, "splits")
    groups = read_table(layout, "groups")[["scan_id", "label"]]
    data = features.merge(splits, on="scan_id").merge(groups, on="scan_id")
    data["y"] = (data["label"] == "COVID").astype(int)
    tv, test = data[data["set"] == "tv"].copy(), data[data["set"] == "test"].copy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    tv["oof"] = 0.0
    for fold in sorted(tv["fold"].dropna().unique()):
        inner = tv["fold"] == fold
        model.fit(tv.loc[~inner, list(FEATURES)], tv.loc[~inner, "y"])
        tv.loc[inner, "oof"] = model.predict_proba(tv.loc[inner, list(FEATURES)])[:, 1]
    model.fit(tv[list(FEATURES)], tv["y"])
    test_p = model.predict_proba(test[list(FEATURES)])[:, 1]
    baseline = {"tv_oof": _auc_with_ci(tv["y"].to_numpy(), tv["oof"].to_numpy(),
                                       tv["patient_id"].to_numpy()),
                "test": _auc_with_ci(test["y"].to_numpy(), test_p,
                                     test["patient_id"].to_numpy())}
    networks = {model: _both(metrics, model, ALL, "auc")
                for model in ("rn34_us", "att_us", "att_ss", "att_ds")}
    best_tv = max(networks.values(), key=lambda n: n["tv"]["value"])["tv"]["value"]
    best_test = max(networks.values(), key=lambda n: n["test"]["value"])["test"]["value"]
    return {"hand_features": baseline, "networks_auc": networks,
            "best_network_beats_baseline": {
                "tv": bool(best_tv > baseline["tv_oof"]["value"]),
                "test": bool(best_test > baseline["test"]["value"])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, help="an evaluated data root")
    parser.add_argument("--profile", help="generate and run this profile's cohort first")
    parser.add_argument("--patients", type=int, help="cohort size (with --profile)")
    parser.add_argument("--root", type=Path, default=Path("paper-tables"),
                        help="work folder with --profile (cohort/ and data/)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="with --profile: run the protocol once per classifier seed")
    parser.add_argument("--cohort-seed", type=int,
                        help="with --profile: another draw of its cohort (synth.seed); "
                             "each draw needs its own --root")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if (args.data_root is None) == (args.profile is None):
        parser.error("give --data-root (already evaluated) or --profile (run it first)")
    if args.seeds and not args.profile:
        parser.error("--seeds needs --profile (each seed re-runs the protocol)")
    if args.cohort_seed is not None and not args.profile:
        parser.error("--cohort-seed needs --profile (it generates the cohort)")
    if args.profile:
        conflict = _cohort_conflict(args.root, {"profile": args.profile,
                                                "patients": args.patients,
                                                "cohort_seed": args.cohort_seed})
        if conflict:
            parser.error(conflict)
        if args.cohort_seed is not None:
            args.profile = _derived_profile(args.profile, args.root,
                                            cohort_seed=args.cohort_seed)
    if not args.seeds:
        seconds = None
        if args.profile:
            seconds = _run_protocol(args.profile, args.patients, args.root)
            args.data_root = args.root / "data"
        summary = _one_root(DataLayout(args.data_root), seconds)
    else:
        args.root.mkdir(parents=True, exist_ok=True)
        per_seed = {}
        for seed in args.seeds:
            print(f"\n=== classifier seed {seed} ===", flush=True)
            seconds = _run_protocol(_derived_profile(args.profile, args.root,
                                                     train_seed=seed),
                                    args.patients, args.root)
            per_seed[seed] = _one_root(DataLayout(args.root / "data"), seconds)
        summary = {"benchmark": "paper_tables", "per_seed": per_seed,
                   "over_seeds": _over_seeds(per_seed)}
        _print_over_seeds(summary["over_seeds"])
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=1))


def _print_over_seeds(over: dict[str, Any]) -> None:
    print(f"\nOver seeds {over['seeds']} (mean [min, max]):")
    for claim in over["claims"]:
        numbers = ", ".join(f"{k} {v.get('mean')} {v.get('interval')}"
                            for k, v in claim["numbers"].items())
        print(f"  holds in {claim['holds_in']:7s} {claim['claim']}: {numbers}")
    print("Goal (issue 24): attention AUC - best untrained baseline >= 0.05 (TV pooled, "
          "nested), attention mass inside the infection >= 2x lung-uniform chance:")
    for key, value in over["goal"].items():
        print(f"  {key}: {value.get('mean')} {value.get('interval')} "
              f"per seed {value['per_seed']}")


def _one_root(layout: DataLayout, seconds: float | None) -> dict[str, Any]:
    """Print the tables, claims and baselines of one evaluated data root; its summary."""
    metrics = read_table(layout, "metrics")
    thresholds = (read_table(layout, "thresholds") if table_exists(layout, "thresholds")
                  else None)
    print("\n".join(text_lines(table_ii(metrics, thresholds))))
    for set_name in ("tv", "test"):
        print()
        print("\n".join(text_lines(table_iii(metrics, set_name))))
    auc_ci = {model: _both(metrics, model, ALL, "auc")
              for model in ("rn34_us", "att_us", "att_ss", "att_ds", "att_ds_nested",
                            "base_intensity", "base_ratio", "base_hand")
              if (metrics["model"] == model).any()}
    print("\nAUC with 95 % patient-bootstrap intervals (TV: pooled out-of-fold; test: the "
          "fold models' mean):")
    for model, values in auc_ci.items():
        print(f"  {model:8s} TV {values['tv']}  test {values['test']}")
    claims = _claims(metrics)
    print("\nClaims:")
    for claim in claims:
        verdict = {True: "holds", False: "does NOT hold", None: "undefined (empty bin)"}
        print(f"  {verdict[claim['holds']]:22s} {claim['claim']}: {claim['numbers']}")
    baseline = _hand_features(layout, metrics)
    hand = baseline["hand_features"]
    print(f"\nGround-truth lesion reference (logistic regression on {len(FEATURES)} lesion "
          f"features of the pipeline's CT and ground-truth masks): TV out-of-fold AUC "
          f"{hand['tv_oof']}, test AUC {hand['test']}; best network beats it: "
          f"{baseline['best_network_beats_baseline']}")
    scans = read_table(layout, "splits")
    goal = _goal(layout, metrics)
    print(f"\nGoal numbers: {goal}")
    summary = {"benchmark": "paper_tables", "data_root_scans": int(len(scans)),
               "tv_scans": int((scans["set"] == "tv").sum()),
               "test_scans": int((scans["set"] == "test").sum()),
               "cpu_count": os.cpu_count(), "protocol_seconds": seconds,
               "auc": auc_ci, "claims": claims, "goal": goal, **baseline}
    print(json.dumps({k: summary[k] for k in ("data_root_scans", "tv_scans", "test_scans",
                                              "protocol_seconds")}))
    return summary


if __name__ == "__main__":
    main()
