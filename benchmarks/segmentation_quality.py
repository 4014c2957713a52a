"""VB-Net held-out quality against its training budget, on any device.

    .venv/bin/python benchmarks/segmentation_quality.py [--profile demo] [--device auto]
        [--epochs N] [--steps N] [--batch N] [--lr X] [--width N] [--depth N]
        [--spacing X Y Z] [--patch Z Y X] [--amp on|off] [--workers N] [--max-holdout N]
        [--json-out FILE]

Builds the profile's synthetic cohort in memory: the same seeds and phantoms as
`dsan synth` (HU rounded to integers as the DICOM export stores them), without
writing DICOM. Partitions the scans as the pipeline does (its hash partition of the
pseudonymous scan ids under the profile's key, or DSAN_PSEUDONYM_KEY), so with the
demo profile the held-out scans are those of `make demo`'s evaluation. Trains with
`train_vbnet` and scores every held-out scan as `segment_volume` does (with
`evaluate_segmentation`), at the majority rule (threshold 0.5) and at the threshold
calibrated on the validation scans. Unset budget options come from the profile.
Prints the device, the budget, the training seconds and the medians: lung Dice,
infection Dice and relative infection-ratio error. Issue 3's goal on the demo
cohort: lung >= 0.98, infection >= 0.90, ratio error < 10 %.
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
import torch  # noqa: E402

from dsan_core.config import KEY_ENV, SynthConfig, VBNetConfig, load_profile  # noqa: E402
from dsan_core.dicom.pseudonym import pseudonymise, resolve_pseudonym_key  # noqa: E402
from dsan_core.segmentation import (  # noqa: E402
    SegCase,
    SegVolume,
    evaluate_segmentation,
    masks_at,
    train_vbnet,
    volume_probs,
)
from dsan_core.segmentation.partition import HOLDOUT, TRAIN, VAL, partition_cases  # noqa: E402
from dsan_core.synthetic import plan_cohort  # noqa: E402
from dsan_core.synthetic.generate import study_phantom  # noqa: E402

#: Study roles the pipeline ingests as scans (a series without a label is quarantined).
USABLE_ROLES = ("cohort",)


def _volume(args: tuple[SynthConfig, bytes, Any]) -> tuple[str, SegVolume]:
    config, key, study = args
    phantom = study_phantom(config, study)
    volume = SegVolume(np.round(phantom.hu).astype(np.float32), phantom.lung.astype(np.uint8),
                       phantom.infection.astype(np.uint8), phantom.spacing)
    # The thin series is SE0002; its scan id is the pipeline's pseudonym of its UID.
    return pseudonymise("series", study.series_uid(2), key), volume


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    finite = [r["ratio_rel_error"] for r in rows if np.isfinite(r["ratio_rel_error"])]
    return {"lung_dice": round(float(np.median([r["lung_dice"] for r in rows])), 4),
            "infection_dice": round(float(np.median([r["infection_dice"] for r in rows])), 4),
            "ratio_rel_error": round(float(np.median(finite)), 4) if finite else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps", type=int, help="steps per epoch")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--width", type=int, help="base width")
    parser.add_argument("--depth", type=int)
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"))
    parser.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--amp", choices=["on", "off"], help="mixed precision (CUDA only)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes building phantoms")
    parser.add_argument("--max-holdout", type=int, help="score only this many held-out scans")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    profile = load_profile(root / "profiles" / f"{args.profile}.yaml")
    seg = profile.segmentation
    overrides = {key: value for key, value in {
        "epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": args.batch,
        "learning_rate": args.lr, "base_width": args.width, "depth": args.depth,
        "spacing_mm": tuple(args.spacing) if args.spacing else None,
        "patch_size": tuple(args.patch) if args.patch else None,
        "mixed_precision": None if args.amp is None else args.amp == "on",
    }.items() if value is not None}
    config = VBNetConfig.model_validate(seg.vbnet.model_dump() | overrides)
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    print(f"device: {name}; torch {torch.__version__}", flush=True)

    started = time.perf_counter()
    key = resolve_pseudonym_key(profile.ingest, os.environ.get(KEY_ENV))
    plan = plan_cohort(profile.synth)
    studies = [s for s in plan.studies if s.role in USABLE_ROLES]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        volumes = dict(pool.map(_volume, [(profile.synth, key, s) for s in studies]))
    # The pipeline's pseudonyms, so the partition (per patient) is the pipeline's.
    patients = {pseudonymise("series", s.series_uid(2), key):
                pseudonymise("patient", plan.patient(s.patient_number).patient_id, key)
                for s in studies}
    partition = partition_cases(volumes, val_fraction=config.val_fraction,
                                holdout_fraction=seg.holdout_fraction, seed=config.seed,
                                max_val=config.max_val_cases, patients=patients)
    cases = {part: [SegCase(uid, partial(volumes.__getitem__, uid))
                    for uid in sorted(volumes) if partition[uid] == part]
             for part in (TRAIN, VAL, HOLDOUT)}
    print(f"cohort: {len(volumes)} scans ({len(cases[TRAIN])} train, {len(cases[VAL])} val, "
          f"{len(cases[HOLDOUT])} held out) built in {time.perf_counter() - started:.1f} s",
          flush=True)
    budget = (f"{config.epochs} epochs x {config.steps_per_epoch} steps x batch "
              f"{config.batch_size}, patch {config.patch_size}, spacing {config.spacing_mm} mm, "
              f"width {config.base_width}, depth {config.depth}, lr {config.learning_rate}, "
              f"amp {device.type == 'cuda' and config.mixed_precision}")
    print(f"budget: {budget}", flush=True)

    started = time.perf_counter()
    result = train_vbnet(cases[TRAIN], cases[VAL], config, device=device, resume=None,
                         on_epoch_end=lambda checkpoint, report: None,
                         log=lambda line: print(line, flush=True))
    train_seconds = time.perf_counter() - started
    print(f"trained in {train_seconds:.1f} s; best epoch {result.best_epoch}, calibrated "
          f"infection threshold {result.infection_threshold:.2f}", flush=True)

    started = time.perf_counter()
    scores: dict[str, list[dict[str, float]]] = {"majority": [], "calibrated": []}
    for case in cases[HOLDOUT][:args.max_holdout]:
        volume = case.load()
        # segment_volume in its two steps: the probabilities once, masks for both rules.
        probs = volume_probs(result.model, volume.hu, volume.spacing, config, device)
        for rule, threshold in (("majority", 0.5), ("calibrated", result.infection_threshold)):
            lung, infection = masks_at(probs, threshold)
            scores[rule].append(evaluate_segmentation(lung, infection, volume.lung,
                                                      volume.infection, volume.spacing))
    summary = {
        "device": name, "budget": budget, "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / (config.epochs * config.steps_per_epoch), 4),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "infection_threshold": result.infection_threshold,
        "held_out": len(cases[HOLDOUT][:args.max_holdout]),
        "majority": _medians(scores["majority"]), "calibrated": _medians(scores["calibrated"]),
    }
    print(json.dumps(summary), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(summary | {"per_scan": scores}, indent=1))


if __name__ == "__main__":
    main()
