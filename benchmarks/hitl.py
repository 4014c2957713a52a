"""Human-in-the-loop rounds with a simulated reviewer: uncertainty vs random selection.

    .venv/bin/python benchmarks/hitl.py [--profile demo] [--k 8] [--rounds 3] [--n 8]
        [--device auto] [--epochs N] [--steps N] [--seed 0] [--workers N] [--json-out FILE]

Builds the profile's synthetic cohort in memory (the phantoms and pseudonymous ids of
`dsan synth` + `dsan run`, as `segmentation_quality.py` does). The held-out scans are the
pipeline's segmentation hold-out (its per-patient hash partition of every scan): never
reviewed, the same for both strategies. The other scans are the pool without masks.

Round 0 starts from K reviewed scans drawn at random from the pool (the same K for both
strategies) and trains a VB-Net on them (`train_vbnet`, the profile's budget; their
train/val split is the pipeline's partition without a hold-out). Each later round does
what `dsan masks export` / `import` / `dsan run` do: the export scores every pool scan
with the last round's VB-Net (`review_score`: mean predictive entropy in its lung) and
picks the N least sure (uncertainty) or draws N (random, seeded), the simulated reviewer
"corrects" each proposal to the ground truth (the radiologist's stand-in), the import
adds them to the reviewed scans, and the VB-Net retrains from scratch on them. After
every round: medians over the held-out scans of lung and infection Dice and relative
ratio error (masks as `segment_volume` makes them, at the profile's infection threshold
rule), and sampling-group agreement (the share of held-out scans whose sampling group
from the predicted ratio is the one from the true ratio); per export, the median Dice
between the proposal and its correction (how much the reviewer had to fix).

Goal (issue 25): uncertainty reaches the final infection Dice of random selection with
fewer reviewed scans. Prints the machine, the setup, one line per round and strategy,
the side-by-side table and the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from machine import cpu_name  # noqa: E402

from dsan_core.config import KEY_ENV, SynthConfig, VBNetConfig, load_profile  # noqa: E402
from dsan_core.dicom.pseudonym import pseudonymise, resolve_pseudonym_key  # noqa: E402
from dsan_core.groups import assign_groups  # noqa: E402
from dsan_core.segmentation import (  # noqa: E402
    SegCase,
    SegVolume,
    evaluate_segmentation,
    masks_at,
    train_vbnet,
    volume_probs,
)
from dsan_core.segmentation.partition import HOLDOUT, TRAIN, VAL, partition_cases  # noqa: E402
from dsan_core.segmentation.review import (  # noqa: E402
    compare_review,
    pick_for_review,
    review_score,
)
from dsan_core.synthetic import plan_cohort  # noqa: E402
from dsan_core.synthetic.generate import study_phantom  # noqa: E402

STRATEGIES = ("uncertainty", "random")


def _volume(args: tuple[SynthConfig, bytes, Any]) -> tuple[str, SegVolume]:
    config, key, study = args
    phantom = study_phantom(config, study)
    volume = SegVolume(np.round(phantom.hu).astype(np.float32), phantom.lung.astype(np.uint8),
                       phantom.infection.astype(np.uint8), phantom.spacing)
    return pseudonymise("series", study.series_uid(2), key), volume


class Loop:
    """The cohort, the fixed held-out scans and the pool, and what one round needs."""

    def __init__(self, volumes: dict[str, SegVolume], patients: dict[str, str],
                 labels: dict[str, str], config: VBNetConfig, holdout: float, threshold_rule: Any,
                 groups: Any, device: torch.device) -> None:
        self.volumes, self.patients, self.labels = volumes, patients, labels
        self.config, self.threshold_rule, self.groups, self.device = (config, threshold_rule,
                                                                      groups, device)
        partition = partition_cases(volumes, val_fraction=config.val_fraction,
                                    holdout_fraction=holdout, seed=config.seed,
                                    max_val=config.max_val_cases, patients=patients)
        self.held = sorted(s for s in volumes if partition[s] == HOLDOUT)
        self.pool = sorted(s for s in volumes if partition[s] != HOLDOUT)

    def train(self, reviewed: list[str]) -> tuple[Any, float, float]:
        """A VB-Net on the reviewed scans: model, infection threshold, seconds."""
        split = partition_cases(reviewed, val_fraction=self.config.val_fraction,
                                holdout_fraction=0.0, seed=self.config.seed,
                                max_val=self.config.max_val_cases, patients=self.patients)
        cases = {part: [SegCase(s, partial(self.volumes.__getitem__, s))
                        for s in sorted(reviewed) if split[s] == part] for part in (TRAIN, VAL)}
        started = time.perf_counter()
        result = train_vbnet(cases[TRAIN], cases[VAL], self.config, device=self.device,
                             resume=None, on_epoch_end=lambda checkpoint, report: None,
                             log=lambda line: None)
        threshold = (result.infection_threshold if self.threshold_rule == "calibrate"
                     else float(self.threshold_rule))
        return result.model, threshold, time.perf_counter() - started

    def segment(self, model: Any, scan: str, threshold: float) -> tuple[Any, Any, Any]:
        volume = self.volumes[scan]
        probs = volume_probs(model, volume.hu, volume.spacing, self.config, self.device)
        lung, infection = masks_at(probs, threshold)
        return probs, lung, infection

    def evaluate(self, model: Any, threshold: float) -> dict[str, float]:
        rows, groups = [], []
        for scan in self.held:
            _, lung, infection = self.segment(model, scan, threshold)
            v = self.volumes[scan]
            scores = evaluate_segmentation(lung, infection, v.lung, v.infection, v.spacing)
            rows.append(scores)
            groups.append({"scan_id": scan, "label": self.labels[scan],
                           "pred": scores["ratio_pred"], "true": scores["ratio_gt"]})
        frame = pd.DataFrame(groups)
        pred = assign_groups(frame.rename(columns={"pred": "infection_ratio"}), self.groups)
        true = assign_groups(frame.rename(columns={"true": "infection_ratio"}), self.groups)
        finite = [r["ratio_rel_error"] for r in rows if np.isfinite(r["ratio_rel_error"])]
        return {"lung_dice": float(np.median([r["lung_dice"] for r in rows])),
                "infection_dice": float(np.median([r["infection_dice"] for r in rows])),
                "infection_dice_mean": float(np.mean([r["infection_dice"] for r in rows])),
                "ratio_rel_error": float(np.median(finite)),
                "group_agreement": float((pred["sampling_group"].astype(str)
                                          == true["sampling_group"].astype(str)).mean())}

    def export(self, model: Any, threshold: float, reviewed: list[str], n: int, strategy: str,
               seed: int) -> tuple[list[str], float, float]:
        """The N scans to review, the median Dice of their proposals to the truth (the
        reviewer's correction), and the seconds the export took."""
        started = time.perf_counter()
        candidates = [s for s in self.pool if s not in set(reviewed)]
        proposals: dict[str, tuple[Any, Any]] = {}
        if strategy == "uncertainty":
            scores = {}
            for scan in candidates:
                probs, lung, infection = self.segment(model, scan, threshold)
                scores[scan] = review_score(probs, lung)
                proposals[scan] = (lung, infection)
            picked = pick_for_review(scores, n, "uncertainty")
        else:
            picked = pick_for_review(dict.fromkeys(candidates, 0.0), n, "random", seed=seed)
            for scan in picked:
                _, lung, infection = self.segment(model, scan, threshold)
                proposals[scan] = (lung, infection)
        fixes = [compare_review(proposals[s], (self.volumes[s].lung,
                                               self.volumes[s].infection)).infection_dice
                 for s in picked]
        return picked, float(np.median(fixes)), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--k", type=int, default=8, help="reviewed scans at the start")
    parser.add_argument("--rounds", type=int, default=3, help="export-correct-import rounds")
    parser.add_argument("--n", type=int, default=8, help="scans per export")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps", type=int, help="steps per epoch")
    parser.add_argument("--seed", type=int, default=0, help="the start's draw and the random "
                                                            "strategy's")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes building phantoms")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    profile = load_profile(root / "profiles" / f"{args.profile}.yaml")
    seg = profile.segmentation
    overrides = {k: v for k, v in {"epochs": args.epochs, "steps_per_epoch": args.steps}.items()
                 if v is not None}
    config = VBNetConfig.model_validate(seg.vbnet.model_dump() | overrides)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda" else
               f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    print(f"machine: {machine}; torch {torch.__version__}; load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)

    started = time.perf_counter()
    key = resolve_pseudonym_key(profile.ingest, os.environ.get(KEY_ENV))
    plan = plan_cohort(profile.synth)
    studies = [s for s in plan.studies if s.role == "cohort"]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        volumes = dict(pool.map(_volume, [(profile.synth, key, s) for s in studies]))
    ids = {pseudonymise("series", s.series_uid(2), key): s for s in studies}
    patients = {scan: pseudonymise("patient", plan.patient(s.patient_number).patient_id, key)
                for scan, s in ids.items()}
    labels = {scan: ("COVID" if s.diagnosis == "COVID" else "CAP") for scan, s in ids.items()}
    loop = Loop(volumes, patients, labels, config, seg.holdout_fraction,
                config.infection_threshold, profile.groups, device)
    start = pick_for_review(dict.fromkeys(loop.pool, 0.0), args.k, "random", seed=args.seed)
    print(f"cohort: {len(volumes)} scans, {len(loop.held)} held out, pool {len(loop.pool)}; "
          f"built in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"setup: K={args.k} reviewed at the start, {args.rounds} rounds of N={args.n}; VB-Net "
          f"{config.epochs} x {config.steps_per_epoch} steps x batch {config.batch_size}, patch "
          f"{config.patch_size}, {config.spacing_mm} mm, width {config.base_width}, infection "
          f"threshold {config.infection_threshold}", flush=True)

    results: dict[str, list[dict[str, Any]]] = {s: [] for s in STRATEGIES}
    first = None
    for strategy in STRATEGIES:
        reviewed = list(start)
        for rnd in range(args.rounds + 1):
            if rnd == 0 and first is not None:  # the same K, the same (seeded) training
                model, threshold, seconds, scores = first
            else:
                model, threshold, seconds = loop.train(reviewed)
                scores = loop.evaluate(model, threshold)
                if rnd == 0:
                    first = (model, threshold, seconds, scores)
            row = {"round": rnd, "reviewed": len(reviewed), "train_seconds": round(seconds, 1),
                   **{k: round(v, 4) for k, v in scores.items()}}
            if rnd < args.rounds:
                picked, fix, export_seconds = loop.export(model, threshold, reviewed, args.n,
                                                          strategy, seed=args.seed + 1 + rnd)
                reviewed += picked
                row |= {"picked_proposal_infection_dice": round(fix, 4),
                        "export_seconds": round(export_seconds, 1)}
            results[strategy].append(row)
            print(f"{strategy} {json.dumps(row)}", flush=True)

    print("\n| round | reviewed scans | uncertainty: infection Dice / ratio error / group "
          "agreement | random: infection Dice / ratio error / group agreement |")
    print("|---|---|---|---|")
    for u, r in zip(results["uncertainty"], results["random"], strict=True):
        print(f"| {u['round']} | {u['reviewed']} | {u['infection_dice']:.3f} / "
              f"{100 * u['ratio_rel_error']:.1f} % / {100 * u['group_agreement']:.0f} % | "
              f"{r['infection_dice']:.3f} / {100 * r['ratio_rel_error']:.1f} % / "
              f"{100 * r['group_agreement']:.0f} % |")
    target = results["random"][-1]["infection_dice"]
    reached = next((u["reviewed"] for u in results["uncertainty"]
                    if u["infection_dice"] >= target), None)
    final = results["random"][-1]["reviewed"]
    verdict = (f"uncertainty reached random's final infection Dice {target:.3f} ({final} "
               f"reviewed scans) with {reached}" if reached is not None else
               f"uncertainty did not reach random's final infection Dice {target:.3f} within "
               f"{final} reviewed scans")
    print(f"\nverdict: {verdict}; total {time.perf_counter() - started:.0f} s; load average "
          f"at the end {os.getloadavg()[0]:.2f}", flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"machine": machine, "results": results,
                                             "verdict": verdict}, indent=1))


if __name__ == "__main__":
    main()
