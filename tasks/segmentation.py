"""Segmentation stage: VB-Net training, per-scan lung/infection masks and the
`infection` table. Each task reads via storage, calls dsan_core, writes atomically
and returns a small manifest; per-scan results are cached by content."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SegmentationConfig
from dsan_core.errors import DsanError, StageError
from dsan_core.segmentation import (
    SegCase,
    SegVolume,
    external_masks,
    infection_ratio,
    infection_threshold_of,
    load_vbnet,
    segment_classical,
    segment_volume,
    train_vbnet,
    validate_external_mask,
)
from dsan_core.segmentation.external import ScanGeometry
from dsan_core.segmentation.partition import HOLDOUT, TRAIN, VAL, partition_cases
from storage.atomic import write_json
from storage.checkpoints import load_checkpoint, save_checkpoint
from storage.hashing import combine_hashes
from storage.schemas import INFECTION
from storage.stage_cache import Manifest, artifact, stage_key
from storage.tables import read_table, write_table
from storage.volumes import read_image, write_image
from tasks.contract import StageRun, cached_stage

TRAIN_STAGE = "train-seg"
SCAN_STAGE = "segment-scan"
STAGE = "segment"
#: Bump when a trained model would differ for the same data and config.
#: 2: validation calibrates an infection threshold (kept in the checkpoint) and scores
#: epochs with the probability rules of `masks_from_probs` instead of an argmax.
TRAIN_VERSION = "2"
#: Bump when masks would differ for the same model. 2: lung holes filled in 3-D.
#: 3: lung = background probability < 0.5, infection = probability > threshold.
VERSION = "3"


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _spacing(image: sitk.Image) -> tuple[float, float, float]:
    x, y, z = image.GetSpacing()
    return (float(x), float(y), float(z))


def ground_truth_cases(run: StageRun) -> pd.DataFrame:
    """Scans with ground-truth masks: scan_id + volume/lung/infection paths and hashes."""
    scans = read_table(run.layout, "scans")[["scan_id", "volume_path", "volume_hash"]]
    truth = read_table(run.layout, "ground_truth")
    return scans.merge(truth, on="scan_id").sort_values("scan_id", ignore_index=True)


def _loader(run: StageRun, row: Any) -> SegCase:
    root = run.layout

    def load() -> SegVolume:
        image = read_image(root.resolve(row.volume_path))
        return SegVolume(
            hu=_array(image).astype(np.float32),
            lung=_array(read_image(root.resolve(row.lung_path))).astype(np.uint8),
            infection=_array(read_image(root.resolve(row.infection_path))).astype(np.uint8),
            spacing=_spacing(image),
        )

    return SegCase(case_id=str(row.scan_id), load=load)


def seg_partition(cases: pd.DataFrame, config: SegmentationConfig) -> dict[str, str]:
    return partition_cases(cases["scan_id"], val_fraction=config.vbnet.val_fraction,
                           holdout_fraction=config.holdout_fraction, seed=config.vbnet.seed,
                           max_val=config.vbnet.max_val_cases)


@task(name="train_segmenter_task", cache_policy=NO_CACHE, persist_result=False)
def train_segmenter_task(data_root: Path, config: SegmentationConfig, device: str,
                         run_id: str | None = None) -> dict[str, Any]:
    """Train the VB-Net on the train/val scans with ground truth; resumable after a kill."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        cases = ground_truth_cases(run)
        if len(cases) < 2:
            raise StageError(
                f"VB-Net training needs at least 2 scans with ground-truth masks, found "
                f"{len(cases)}; ingest with --masks, or use segmentation.method classical/external"
            )
        partition = seg_partition(cases, config)
        used = cases[cases["scan_id"].map(partition) != HOLDOUT]
        inputs = {
            f"{r.scan_id}:{partition[r.scan_id]}": combine_hashes(
                [r.volume_hash, r.lung_hash, r.infection_hash])
            for r in used.itertuples(index=False)
        }
        config_hash = config.vbnet.training_fingerprint()
        key = stage_key(TRAIN_STAGE, TRAIN_VERSION, config_hash, inputs)
        model_dir = run.layout.model_dir("vbnet", key[:16])

        def compute(stage_cache_key: str) -> Manifest:
            train = [_loader(run, r) for r in used.itertuples(index=False)
                     if partition[r.scan_id] == TRAIN]
            val = [_loader(run, r) for r in used.itertuples(index=False)
                   if partition[r.scan_id] == VAL]
            last = model_dir / "last.pt"
            resume = load_checkpoint(last) if last.exists() else None
            if resume is not None:
                logger.info("resuming VB-Net training after epoch %s", resume.get("epoch"))
            history_path = model_dir / "history.json"
            history: list[dict[str, Any]] = (
                json.loads(history_path.read_text()) if resume and history_path.exists() else []
            )

            def on_epoch_end(checkpoint: dict[str, Any], report: Any) -> None:
                save_checkpoint(checkpoint, last)
                history.append({k: getattr(report, k) for k in report.__dataclass_fields__})
                write_json(history_path, history)
                logger.info("VB-Net epoch %d: loss %.4f, val lung Dice %.4f, infection Dice %.4f",
                            report.epoch, report.train_loss, report.val_lung_dice,
                            report.val_infection_dice)

            result = train_vbnet(train, val, config.vbnet, device=torch.device(device),
                                 resume=resume, on_epoch_end=on_epoch_end, log=logger.info)
            best = model_dir / "best.pt"
            save_checkpoint({"format": "dsan-vbnet-weights-v1",
                             "best_model": result.model.state_dict(),
                             "best_epoch": result.best_epoch,
                             "best_score": float(result.best_score),
                             "infection_threshold": result.infection_threshold}, best)
            return Manifest(TRAIN_STAGE, stage_cache_key,
                            {"model": artifact(run.layout, best, run.memo),
                             "history": artifact(run.layout, history_path, run.memo)},
                            {"best_epoch": result.best_epoch,
                             "best_score": float(result.best_score),
                             "infection_threshold": result.infection_threshold,
                             "n_train": len(train), "n_val": len(val),
                             "model_version": key[:16]})

        manifest = cached_stage(run, stage=TRAIN_STAGE, version=TRAIN_VERSION,
                                config_hash=config_hash, inputs=inputs,
                                compute=compute, logger=logger)
        return manifest.to_dict()


def _method_tag(config: SegmentationConfig, model: Manifest | None) -> tuple[str, str]:
    """(mask folder tag, model version) of the configured segmenter."""
    if config.method == "vbnet":
        if model is None:
            raise StageError("method vbnet needs a trained model manifest")
        version = str(model.data["model_version"])
        return f"vbnet__{version}", version
    if config.method == "classical":
        version = config.classical.fingerprint()
        return f"classical__{version}", version
    return "external", "external"


def _external_sources(config: SegmentationConfig, scan_id: str) -> dict[str, Path]:
    folder = config.external_mask_dir
    assert folder is not None  # guaranteed by SegmentationConfig's validator
    pair = {k: folder / f"{scan_id}_{k}.nii.gz" for k in ("lung", "infection")}
    if all(p.is_file() for p in pair.values()):
        return pair
    label_map = folder / f"{scan_id}.nii.gz"
    if label_map.is_file():
        return {"labels": label_map}
    raise StageError(
        f"scan {scan_id}: no external masks (expected {scan_id}_lung.nii.gz and "
        f"{scan_id}_infection.nii.gz, or a label map {scan_id}.nii.gz, in external_mask_dir)"
    )


def _segment_one(config: SegmentationConfig, model: torch.nn.Module | None, threshold: float,
                 sources: dict[str, Path], device: str, scan_id: str,
                 image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Masks of one scan by the configured method (`sources`: its external mask files)."""
    hu = _array(image).astype(np.float32)
    spacing = _spacing(image)
    if config.method == "vbnet":
        assert model is not None
        return segment_volume(model, hu, spacing, config.vbnet, torch.device(device),
                              infection_threshold=threshold)
    if config.method == "classical":
        return segment_classical(hu, spacing, config.classical, scan_id=scan_id)
    geometry = ScanGeometry.from_image(image)
    arrays = {}
    for kind, path in sources.items():
        mask = read_image(path)
        validate_external_mask(mask.GetSize(), mask.GetSpacing(), mask.GetOrigin(),
                               mask.GetDirection(), geometry, scan_id=scan_id, kind=kind)
        arrays[kind] = _array(mask)
    if "labels" in arrays:
        return external_masks(arrays["labels"], None, scan_id=scan_id)
    return external_masks(arrays["lung"], arrays["infection"], scan_id=scan_id)


@task(name="segment_scans_task", cache_policy=NO_CACHE, persist_result=False)
def segment_scans_task(data_root: Path, config: SegmentationConfig, model: dict[str, Any] | None,
                       device: str, run_id: str | None = None) -> dict[str, Any]:
    """Masks for every ingested scan + the `infection` table; cached per scan by content."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        model_manifest = Manifest.from_dict(model) if model else None
        tag, version = _method_tag(config, model_manifest)
        scans = read_table(run.layout, "scans").sort_values("scan_id", ignore_index=True)
        network, threshold = None, 0.5
        if config.method == "vbnet" and model_manifest is not None:
            weights = load_checkpoint(model_manifest.output_path(run.layout, "model"))
            network = load_vbnet(weights, config.vbnet, torch.device(device))
            threshold = infection_threshold_of(weights, config.vbnet)
            logger.info("VB-Net infection threshold %.2f (%s)", threshold,
                        "calibrated" if config.vbnet.infection_threshold == "calibrate"
                        else "configured")

        def compute(key: str, scan: Any, sources: dict[str, Path]) -> Manifest:
            image = read_image(run.layout.resolve(scan.volume_path))
            lung, infection = _segment_one(config, network, threshold, sources, device,
                                           scan.scan_id, image)
            ratio = infection_ratio(lung, infection, _spacing(image), scan_id=scan.scan_id)
            outputs = {}
            for kind, mask in (("lung", lung), ("infection", infection)):
                out = sitk.GetImageFromArray(mask.astype(np.uint8))
                out.CopyInformation(image)
                path = run.layout.mask(tag, scan.scan_id, kind)
                write_image(out, path)
                outputs[kind] = artifact(run.layout, path, run.memo)
            return Manifest(SCAN_STAGE, key, outputs, {
                "lung_ml": ratio.lung_ml, "infection_ml": ratio.infection_ml,
                "infection_ratio": ratio.infection_ratio})

        rows, computed, failures = [], 0, []
        for scan in scans.itertuples(index=False):
            inputs = {"volume": scan.volume_hash, "segmenter": version}
            if network is not None:
                inputs["infection_threshold"] = f"{threshold:.6g}"
            try:
                # Missing external masks fail this scan alone, like a wrong geometry.
                sources = (_external_sources(config, scan.scan_id)
                           if config.method == "external" else {})
                inputs |= {k: run.memo.hash_file(p) for k, p in sources.items()}
                manifest = cached_stage(run, stage=SCAN_STAGE, version=VERSION,
                                        config_hash=tag, inputs=inputs,
                                        compute=partial(compute, scan=scan, sources=sources),
                                        record=False)
            except DsanError as error:
                failures.append(str(error))
                logger.warning("segmentation failed: %s", error)
                continue
            computed += not manifest.data["cache_hit"]
            rows.append({
                "scan_id": scan.scan_id, "lung_ml": manifest.data["lung_ml"],
                "infection_ml": manifest.data["infection_ml"],
                "infection_ratio": manifest.data["infection_ratio"],
                "method": config.method, "model_version": version,
                "infection_threshold": threshold if network is not None else None,
                "lung_path": manifest.outputs["lung"]["path"],
                "lung_hash": manifest.outputs["lung"]["sha256"],
                "infection_path": manifest.outputs["infection"]["path"],
                "infection_hash": manifest.outputs["infection"]["sha256"],
            })
        table = pd.DataFrame(rows, columns=INFECTION.names)

        def write(key: str) -> Manifest:
            write_table(run.layout, "infection", table)
            return Manifest(STAGE, key, {"infection": artifact(
                run.layout, run.layout.table("infection"), run.memo)})

        stage = cached_stage(
            run, stage=STAGE, version=VERSION, config_hash=tag,
            inputs={"masks": combine_hashes(table["lung_hash"].tolist()
                                            + table["infection_hash"].tolist()),
                    "infection_threshold": str(table["infection_threshold"].tolist())},
            compute=write, logger=logger)
        return {"stage": stage.to_dict(), "segmented": computed,
                "infection_threshold": threshold if network is not None else None,
                "cached": len(rows) - computed, "failed": len(failures), "method_tag": tag,
                "failures": failures[:20]}
