"""What a whole `dsan run` left in a data root, for benchmarks/gpu_pipeline.sh.

    python benchmarks/gpu_pipeline_report.py --data-root DIR --profile demo-gpu
        [--json FILE] [--inference-scans 8]

Prints (and writes as JSON): the wall time per stage of the last run (its lineage
rows), the VB-Net's held-out Dice and ratio error (`seg_eval`, medians), the
classifier's TV AUC pooled over the folds' out-of-fold predictions per model
(`att_ds_nested`: the DS ensemble with fold k's weights searched on the other folds,
the honest DS number) and its test AUC (mean +- std over the fold models), and network
inference seconds per scan on the profile's device, timed here after one warm-up: the
VB-Net's sliding-window probabilities (`volume_probs`, resampling included) on up to
`--inference-scans` held-out scans, and one fold model of each branch on its test scans.
Any part the run did not reach is reported as missing, not an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _stage_seconds(layout: Any) -> dict[str, Any]:
    from storage.lineage import last_run_id, stage_times

    run_id = last_run_id(layout)
    if run_id is None:
        return {}
    times = stage_times(layout, run_id)
    return {"run_id": run_id, "seconds": {
        str(stage): round(float(rows["seconds"].sum()), 1)
        for stage, rows in times.groupby("stage", sort=False)}}


def _vbnet_quality(layout: Any) -> dict[str, Any]:
    from storage.tables import read_table, table_exists

    if not table_exists(layout, "seg_eval"):
        return {}
    table = read_table(layout, "seg_eval")
    found = {}
    for method, rows in table.groupby("method"):
        found[str(method)] = {"scans": int(len(rows)),
                              "lung_dice": round(float(rows["lung_dice"].median()), 4),
                              "infection_dice": round(float(rows["infection_dice"].median()), 4),
                              "ratio_rel_error": round(float(rows["ratio_rel_error"].median()),
                                                       4)}
    return found


def _auc(layout: Any) -> dict[str, Any]:
    from storage.tables import read_table, table_exists

    if not table_exists(layout, "metrics"):
        return {}
    m = read_table(layout, "metrics")
    m = m[(m["metric"] == "auc") & (m["bin"] == "all")]
    found: dict[str, Any] = {}
    for model, rows in m.groupby("model", sort=False):
        pooled = rows[(rows["set"] == "tv") & (rows["aggregate"] == "pooled")]["value"]
        mean = rows[(rows["set"] == "test") & (rows["aggregate"] == "mean")]["value"]
        std = rows[(rows["set"] == "test") & (rows["aggregate"] == "std")]["value"]
        found[str(model)] = {
            "tv_pooled_auc": round(float(pooled.iloc[0]), 4) if len(pooled) else None,
            "test_auc_mean": round(float(mean.iloc[0]), 4) if len(mean) else None,
            "test_auc_std": round(float(std.iloc[0]), 4) if len(std) else None}
    return found


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _vbnet_inference(root: Path, config: Any, device: Any, n_scans: int) -> dict[str, Any]:
    import numpy as np
    import SimpleITK as sitk
    from tasks.contract import StageRun

    from dsan_core.segmentation import load_vbnet, volume_probs
    from storage.checkpoints import load_checkpoint
    from storage.volumes import read_image
    from tasks.segmentation import current_vbnet, ground_truth_cases

    with StageRun.open(root) as run:
        model = current_vbnet(run, config.segmentation)
        if model is None:
            return {}
        network = load_vbnet(load_checkpoint(model.stage.output_path(run.layout, "model")),
                             config.segmentation.vbnet, device)
        paths = ground_truth_cases(run)["volume_path"].tolist()[-(n_scans + 1):]
        volumes = [read_image(run.layout.resolve(p)) for p in paths]
    seconds = []
    for i, image in enumerate(volumes):
        hu = sitk.GetArrayFromImage(image).astype(np.float32)
        _synchronize(device)
        started = time.perf_counter()
        volume_probs(network, hu, image.GetSpacing(), config.segmentation.vbnet, device)
        _synchronize(device)
        if i:  # the first is the warm-up
            seconds.append(time.perf_counter() - started)
    return {"scans": len(seconds), "s_per_scan": round(sum(seconds) / len(seconds), 4)
            if seconds else None, "shape": list(sitk.GetArrayFromImage(volumes[0]).shape)}


def _classifier_inference(root: Path, config: Any, device: Any) -> dict[str, Any]:
    from tasks.contract import StageRun

    from dsan_core.classifier import load_classifier, predict_probabilities
    from storage.checkpoints import load_checkpoint
    from storage.tables import read_table, table_exists
    from tasks.training import fold_data

    found: dict[str, Any] = {}
    with StageRun.open(root) as run:
        if not table_exists(run.layout, "training_runs"):
            return {}
        runs = read_table(run.layout, "training_runs").sort_values(["branch", "fold"])
        for branch, rows in runs.groupby("branch"):
            row = rows.iloc[0]
            cases = fold_data(run, int(row["fold"])).set_cases("test")
            if not cases:
                continue
            network = load_classifier(load_checkpoint(run.layout.resolve(row["checkpoint_path"])),
                                      config.train, device)
            times = []
            for _ in range(2):  # warm-up, then timed
                _synchronize(device)
                started = time.perf_counter()
                predict_probabilities(network, cases, device=device,
                                      batch_size=config.train.val_batch_size,
                                      mixed_precision=config.train.mixed_precision,
                                      channels_last=config.train.channels_last_3d)
                _synchronize(device)
                times.append(time.perf_counter() - started)
            found[str(branch)] = {"scans": len(cases),
                                  "s_per_scan": round(times[-1] / len(cases), 5)}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--profile", default="demo-gpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--inference-scans", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from dsan_core.config import load_profile
    from storage.layout import DataLayout

    profile = Path(args.profile)
    config = load_profile(profile if profile.suffix in (".yaml", ".yml")
                          else REPO / "profiles" / f"{args.profile}.yaml")
    wanted = config.runtime.device
    device = torch.device("cuda" if wanted in ("cuda", "auto") and torch.cuda.is_available()
                          else "cpu")
    layout = DataLayout(args.data_root)
    report: dict[str, Any] = {"device": str(device), "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name(0)
                              if torch.cuda.is_available() else None}
    for name, part in (("stages", lambda: _stage_seconds(layout)),
                       ("vbnet_held_out", lambda: _vbnet_quality(layout)),
                       ("classifier_auc", lambda: _auc(layout)),
                       ("vbnet_inference", lambda: _vbnet_inference(
                           args.data_root, config, device, args.inference_scans)),
                       ("classifier_inference", lambda: _classifier_inference(
                           args.data_root, config, device))):
        try:
            report[name] = part()
        except Exception as error:  # noqa: BLE001 - a part the run did not reach
            report[name] = {"missing": f"{type(error).__name__}: {error}"}
        print(f"== {name}: {json.dumps(report[name])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
