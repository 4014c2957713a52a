"""Segmentation stage: VB-Net training, per-scan lung/infection masks and the
`infection` table. Each task reads via storage, calls dsan_core, writes atomically
and returns a small typed outcome; per-scan results are cached by content."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SegmentationConfig
from dsan_core.errors import DsanError, MaskError, StageError
from dsan_core.segmentation import (
    SegCase,
    SegVolume,
    best_weights,
    load_vbnet,
    segment_scan,
    segmenter_tag,
    spacing_of,
    train_vbnet,
)
from dsan_core.segmentation.partition import TRAIN, VAL
from dsan_core.segmentation.reporting import segmentation_partition
from storage.atomic import write_json
from storage.checkpoints import load_checkpoint, save_checkpoint
from storage.hashing import combine_hashes
from storage.schemas import INFECTION
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, write_table
from storage.truth import truth_masks
from storage.volumes import (
    external_mask_files,
    image_array,
    read_array,
    read_image,
    write_array,
)
from tasks._common.contract import (
    MapItem,
    StageInputs,
    StageItems,
    StageRun,
    cached_map,
    cached_stage,
)
from tasks._common.progress import StageProgress

TRAIN_STAGE = "train-seg"
SCAN_STAGE = "segment-scan"
STAGE = "segment"
#: Bump when a trained model would differ for the same data and config.
#: 2: validation calibrates an infection threshold (kept in the checkpoint) and scores
#: epochs with the probability rules of `masks_from_probs` instead of an argmax.
#: 3: seeded by the shared epoch loop's rule (`dsan_core.training_loop`).
TRAIN_VERSION = "3"
#: Bump when masks would differ for the same model. 2: lung holes filled in 3-D.
#: 3: lung = background probability < 0.5, infection = probability > threshold.
VERSION = "3"


@dataclass(frozen=True)
class TrainSegOutcome:
    stage: Manifest
    model_version: str
    best_epoch: int
    best_score: float
    infection_threshold: float
    n_train: int
    n_val: int

    @property
    def cache_hit(self) -> bool:
        return bool(self.stage.data.get("cache_hit"))


@dataclass(frozen=True)
class SegmentOutcome:
    stage: Manifest
    method_tag: str
    segmented: int
    cached: int
    failures: tuple[str, ...]  # messages, naming scans by pseudonym
    infection_threshold: float | None  # VB-Net only

    @property
    def failed(self) -> int:
        return len(self.failures)


def ground_truth_cases(run: StageRun) -> pd.DataFrame:
    """Scans with ground-truth masks (ingested or reviewed, `storage.truth`): scan_id,
    patient_id, volume/lung/infection paths and hashes."""
    scans = read_table(run.layout, "scans")[["scan_id", "patient_id", "volume_path",
                                             "volume_hash"]]
    truth = truth_masks(run.layout).drop(columns="source")
    return scans.merge(truth, on="scan_id").sort_values("scan_id", ignore_index=True)


def patients_of(cases: pd.DataFrame) -> dict[str, str]:
    """scan id -> pseudonymous patient id."""
    return dict(zip(cases["scan_id"], cases["patient_id"], strict=True))


def _seg_case(run: StageRun, row: Any) -> SegCase:
    def load() -> SegVolume:
        image = read_image(run.layout.resolve(row.volume_path))
        masks = [read_array(run.layout.resolve(p), np.uint8)
                 for p in (row.lung_path, row.infection_path)]
        return SegVolume(image_array(image, np.float32), masks[0], masks[1], spacing_of(image))

    return SegCase(case_id=str(row.scan_id), load=load)


@dataclass(frozen=True)
class VBNetTrainingPlan:
    """What the VB-Net trains on: the cases, their partition, the stage inputs, and the
    model version (its training key) they give."""

    used: list[Any]  # rows of ground_truth_cases in train or val
    partition: dict[str, str]
    spec: StageInputs  # the train-seg stage's key

    @property
    def version(self) -> str:
        """The model version: the first 16 hex of its training key."""
        return self.spec.key[:16]

    @property
    def trainable(self) -> bool:
        """At least one scan to train on (else there is no VB-Net for these masks)."""
        return any(self.partition[r.scan_id] == TRAIN for r in self.used)

    def why_not(self) -> str:
        return (f"{len(self.partition)} scan(s) with ground-truth masks, none in the VB-Net's "
                "training partition")


def vbnet_training_plan(run: StageRun, config: SegmentationConfig) -> VBNetTrainingPlan:
    """What the VB-Net would train on now; StageError when method vbnet has too few scans
    with ground truth (other methods only train it when the plan is `trainable`)."""
    cases = ground_truth_cases(run)
    if len(cases) < 2 and config.method == "vbnet":
        raise StageError(
            f"VB-Net training needs at least 2 scans with ground-truth masks, found "
            f"{len(cases)}; ingest with --masks, review masks (dsan masks export / import), "
            "or use segmentation.method classical/external"
        )
    partition = segmentation_partition(cases["scan_id"].tolist(), config, patients_of(cases))
    used = [r for r in cases.itertuples(index=False) if partition[r.scan_id] in (TRAIN, VAL)]
    inputs = {f"{r.scan_id}:{partition[r.scan_id]}": combine_hashes(
        [r.volume_hash, r.lung_hash, r.infection_hash]) for r in used}
    return VBNetTrainingPlan(used, partition, StageInputs(
        TRAIN_STAGE, TRAIN_VERSION, config.vbnet.training_fingerprint(), inputs))


def current_vbnet(run: StageRun, config: SegmentationConfig) -> TrainSegOutcome | None:
    """The VB-Net trained on the data root's current ground truth with these settings,
    when `train-seg` has trained it (verified like a cache hit); None otherwise."""
    plan = vbnet_training_plan(run, config)
    if not plan.trainable:
        return None
    stage = run.cache.lookup(TRAIN_STAGE, plan.spec.key)
    return None if stage is None else _outcome(stage)


def _outcome(stage: Manifest) -> TrainSegOutcome:
    d = stage.data
    return TrainSegOutcome(stage, d["model_version"], int(d["best_epoch"]),
                           float(d["best_score"]), float(d["infection_threshold"]),
                           int(d["n_train"]), int(d["n_val"]))


@task(name="train_segmenter_task", cache_policy=NO_CACHE, persist_result=False)
def train_segmenter_task(data_root: Path, config: SegmentationConfig, device: str,
                         run_id: str | None = None) -> TrainSegOutcome | None:
    """Train the VB-Net on the train/val scans with ground truth; resumable after a kill.

    With method vbnet it segments every scan; with the other methods it is the segmenter
    `dsan predict` uses for studies without masks and `dsan masks export` proposes with,
    trained whenever there is a scan with ground truth to train on (None otherwise)."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        plan = vbnet_training_plan(run, config)
        if not plan.trainable and config.method != "vbnet":
            logger.info("no VB-Net to train (%s): dsan predict segments studies without masks "
                        "with the classical segmenter", plan.why_not())
            return None
        used, partition, version = plan.used, plan.partition, plan.version

        def compute(key: str) -> Manifest:
            train = [_seg_case(run, r) for r in used if partition[r.scan_id] == TRAIN]
            val = [_seg_case(run, r) for r in used if partition[r.scan_id] == VAL]
            return _train(run, key, version, train, val, config, device, logger)

        stage = cached_stage(run, plan.spec, compute=compute, logger=logger)
    return _outcome(stage)


@task(name="segment_scans_task", cache_policy=NO_CACHE, persist_result=False)
def segment_scans_task(data_root: Path, config: SegmentationConfig,
                       model: TrainSegOutcome | None, device: str,
                       run_id: str | None = None) -> SegmentOutcome:
    """Masks for every ingested scan + the `infection` table; cached per scan by content."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        segmenter = segmenter_id(config, model)
        network = _load_segmenter(run, config, model, segmenter, device, logger)
        items, missing = segment_items(run, config, segmenter)

        threshold = 0.5 if segmenter.threshold is None else segmenter.threshold
        segment = partial(_segment_one, run, config, segmenter.tag, network, threshold, device)
        done = cached_map(run, items, compute=segment, description="segmenting scans",
                          unit="scans", artifact_key="segment-progress")
        failures = [*missing, *done.failures.values()]
        for message in failures:
            logger.warning("segmentation failed: %s", message)
        table = infection_table(config, segmenter, done.manifests)

        def write(key: str) -> Manifest:
            write_table(run.layout, "infection", table)
            return Manifest(STAGE, key, {"infection": artifact(
                run.layout, run.layout.table("infection"), run.memo)})

        stage = cached_stage(run, infection_inputs(segmenter, table), compute=write,
                             logger=logger)
    return SegmentOutcome(stage, segmenter.tag, done.computed, done.cached, tuple(failures),
                          segmenter.threshold)


def _train(run: StageRun, key: str, version: str, train: list[SegCase], val: list[SegCase],
           config: SegmentationConfig, device: str, logger: Any) -> Manifest:
    """Train (resuming from `last.pt` when a killed run left one); write `best.pt`."""
    last = run.layout.checkpoint("vbnet", version, "last")
    history_path = run.layout.training_history("vbnet", version)
    # A refreshed training starts over; otherwise a killed one resumes.
    resume = (load_checkpoint(last) if last.exists() and TRAIN_STAGE not in run.refresh
              else None)
    history = json.loads(history_path.read_text()) if resume and history_path.exists() else []
    progress = StageProgress(f"training VB-Net ({len(train)} scans, {len(val)} val)",
                             config.vbnet.epochs, unit="epochs", artifact_key="train-seg-progress")

    def on_epoch_end(checkpoint: dict[str, Any], report: Any) -> None:
        save_checkpoint(checkpoint, last)
        history.append(asdict(report))
        write_json(history_path, history)
        progress.advance(note=f"loss {report.train_loss:.3f}, val Dice lung "
                              f"{report.val_lung_dice:.3f} infection "
                              f"{report.val_infection_dice:.3f}")

    with progress:
        progress.advance(len(history))
        result = train_vbnet(train, val, config.vbnet, device=torch.device(device),
                             resume=resume, on_epoch_end=on_epoch_end, log=logger.info)
    best = run.layout.checkpoint("vbnet", version, "best")
    save_checkpoint(best_weights(result), best)
    return Manifest(TRAIN_STAGE, key, {
        "model": artifact(run.layout, best, run.memo),
        "history": artifact(run.layout, history_path, run.memo)}, {
        "best_epoch": result.best_epoch, "best_score": float(result.best_score),
        "infection_threshold": result.infection_threshold, "n_train": len(train),
        "n_val": len(val), "model_version": version})


@dataclass(frozen=True)
class SegmenterId:
    """What segments the scans: its mask folder tag, its version (the VB-Net's training
    key, the classical method's settings, or the method's name) and, for the VB-Net, the
    infection threshold it segments at."""

    tag: str
    version: str
    threshold: float | None


def vbnet_threshold(config: SegmentationConfig, model: TrainSegOutcome) -> float:
    """The VB-Net's infection threshold: the configured number, or the one its training
    calibrated (kept in its manifest, the same as in its checkpoint)."""
    if config.vbnet.infection_threshold == "calibrate":
        return model.infection_threshold
    return float(config.vbnet.infection_threshold)


def segmenter_id(config: SegmentationConfig, model: TrainSegOutcome | None) -> SegmenterId:
    """The configured segmenter; ModelError for method vbnet without a trained `model`."""
    tag, version = segmenter_tag(config, model.model_version if model else None)
    threshold = (vbnet_threshold(config, model)
                 if config.method == "vbnet" and model is not None else None)
    return SegmenterId(tag, version, threshold)


def _load_segmenter(run: StageRun, config: SegmentationConfig, model: TrainSegOutcome | None,
                    segmenter: SegmenterId, device: str, logger: Any) -> torch.nn.Module | None:
    """The trained VB-Net (method vbnet)."""
    if segmenter.threshold is None or model is None:
        return None
    weights = load_checkpoint(model.stage.output_path(run.layout, "model"))
    logger.info("VB-Net infection threshold %.2f (%s)", segmenter.threshold,
                "calibrated" if config.vbnet.infection_threshold == "calibrate" else "configured")
    return load_vbnet(weights, config.vbnet, torch.device(device))


def _segment_one(run: StageRun, config: SegmentationConfig, tag: str,
                 network: torch.nn.Module | None, threshold: float, device: str, scan: Any,
                 sources: dict[str, Path]) -> Manifest:
    """Segment one scan and write its two masks on the scan's grid."""
    image = read_image(run.layout.resolve(scan.volume_path))
    external = {kind: read_image(path) for kind, path in sources.items()}
    result = segment_scan(image, config, scan_id=scan.scan_id, model=network,
                          infection_threshold=threshold, device=torch.device(device),
                          external=external)
    outputs = {}
    for kind, mask in (("lung", result.lung), ("infection", result.infection)):
        path = run.layout.mask(tag, scan.scan_id, kind)
        write_array(mask, image, path, np.uint8)
        outputs[kind] = artifact(run.layout, path, run.memo)
    return Manifest(SCAN_STAGE, "", outputs, {
        "lung_ml": result.ratio.lung_ml, "infection_ml": result.ratio.infection_ml,
        "infection_ratio": result.ratio.infection_ratio})


def segment_items(run: StageRun, config: SegmentationConfig,
                  segmenter: SegmenterId) -> tuple[StageItems, list[str]]:
    """The segment-scan stage's items, one per ingested scan (with its mask files for
    methods external and ground_truth), and why the scans without those masks cannot be
    segmented."""
    items, missing = [], []
    scans = read_table(run.layout, "scans").sort_values("scan_id", ignore_index=True)
    truth = (truth_masks(run.layout).set_index("scan_id") if config.method == "ground_truth"
             else None)
    for scan in scans.itertuples(index=False):
        inputs = {"volume": scan.volume_hash, "segmenter": segmenter.version}
        if segmenter.threshold is not None:  # the VB-Net's
            inputs["infection_threshold"] = f"{segmenter.threshold:.6g}"
        try:  # a scan without the masks it needs fails alone
            sources = _mask_sources(run, config, scan.scan_id, truth)
        except DsanError as error:
            missing.append(str(error))
            continue
        inputs |= {kind: run.memo.hash_file(path) for kind, path in sources.items()}
        items.append(MapItem(scan.scan_id, inputs, (scan, sources)))
    return StageItems(SCAN_STAGE, VERSION, segmenter.tag, items), missing


def infection_table(config: SegmentationConfig, segmenter: SegmenterId,
                    manifests: dict[str, Manifest]) -> pd.DataFrame:
    """The `infection` table of the scans' segment-scan manifests (by scan id)."""
    return pd.DataFrame([_infection_row(scan_id, m, config, segmenter)
                         for scan_id, m in manifests.items()], columns=INFECTION.names)


def infection_inputs(segmenter: SegmenterId, table: pd.DataFrame) -> StageInputs:
    """The segment stage's key (the `infection` table): every scan's masks and threshold."""
    masks = combine_hashes(table["lung_hash"].tolist() + table["infection_hash"].tolist())
    return StageInputs(STAGE, VERSION, segmenter.tag, {
        "masks": masks, "infection_threshold": str(table["infection_threshold"].tolist())})


def _mask_sources(run: StageRun, config: SegmentationConfig, scan_id: str,
                  truth: pd.DataFrame | None) -> dict[str, Path]:
    """The mask files a scan is segmented from (methods external and ground_truth)."""
    if config.method == "external" and config.external_mask_dir is not None:
        return external_mask_files(config.external_mask_dir, scan_id)
    if truth is None:
        return {}
    if scan_id not in truth.index:
        raise MaskError("no ground-truth masks (method ground_truth needs ingestion with "
                        "--masks, or reviewed masks: dsan masks import)", scan=scan_id,
                        reason="missing")
    row = truth.loc[scan_id]
    return {kind: run.layout.resolve(row[f"{kind}_path"]) for kind in ("lung", "infection")}


def _infection_row(scan_id: str, manifest: Manifest, config: SegmentationConfig,
                   segmenter: SegmenterId) -> dict[str, Any]:
    return {"scan_id": scan_id, "lung_ml": manifest.data["lung_ml"],
            "infection_ml": manifest.data["infection_ml"],
            "infection_ratio": manifest.data["infection_ratio"], "method": config.method,
            "model_version": segmenter.version,
            "infection_threshold": segmenter.threshold,
            "lung_path": manifest.outputs["lung"]["path"],
            "lung_hash": manifest.outputs["lung"]["sha256"],
            "infection_path": manifest.outputs["infection"]["path"],
            "infection_hash": manifest.outputs["infection"]["sha256"]}
