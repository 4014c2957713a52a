"""Classifier training stage: one Prefect task per (fold, branch), and the tables.

`train_branch_task` trains one branch of one fold and predicts with its kept model. It
is self-contained (the data root, a config, a fold, a branch and a device), so a
worker of a GPU pool can run it alone. Three cached items per task:

    classifier-train   key: the fold's TRAINING scans (id, pre-processed input and
                       mask hashes, label, sampling group, patient), the training
                       fingerprint of TrainConfig, branch, fold, seed, VERSION
                       -> models/classifier__<key>/best.pt, history.json
    classifier-predict key: the checkpoint's hash, the set and its scans' input hashes
                       -> models/classifier__<key>/val-<inputs>.parquet (the fold's
                       out-of-fold predictions) and test-<inputs>.parquet

The fold's validation scans are not in the training key: training never sees them
(`dsan_core.classifier.selection`), so their predictions, the out-of-fold set the
evaluation reports, come from a model that was chosen without them. Adding a scan to
a fold's validation part re-predicts that fold's models without retraining them, and
retraining one branch or fold leaves the others alone. A killed training resumes from
`last.pt`. `training_tables_task` gathers every (fold, branch) model trained on the
current data into the `training_runs`, `training_history` and `predictions` tables and
the curves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.classifier import (
    ClassifierCase,
    cases_from_tables,
)
from dsan_core.classifier.network import UNCALIBRATED
from dsan_core.config import TrainConfig
from dsan_core.splits import FoldScans, fold_scans
from storage.hashing import hash_json
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, require_tables
from storage.volumes import open_npy
from tasks._common.contract import MapItem, StageItems, StageRun, cached_map
from tasks._common.progress import StageProgress
from tasks._common.workers import CLASSIFIER_MODEL, predict_and_save, train_and_save

TRAIN_STAGE = "classifier-train"
PREDICT_STAGE = "classifier-predict"
#: Bump when a trained model or its predictions would differ for the same inputs.
VERSION = "2"
MODEL = CLASSIFIER_MODEL
#: The prediction sets of a fold's model: its validation fold and the test set.
PREDICTION_SETS: tuple[str, str] = ("val", "test")


@dataclass(frozen=True)
class TrainingCluster:
    """Where trainings go instead of the task's process: a Dask scheduler whose workers
    declare `resources` (e.g. {"GPU": 1} per GPU), and the device setting each worker
    resolves for itself ("auto": its GPU when it sees one)."""

    address: str
    resources: dict[str, float]
    device: str


@dataclass(frozen=True)
class BranchOutcome:
    """One trained (fold, branch) model and where its predictions are."""

    fold: int
    branch: str
    model_key: str  # 16 hex: models/classifier__<model_key>/
    train: Manifest  # best.pt, history.json
    predictions: dict[str, Manifest]  # "val" / "test" -> its predictions (absent: no scans)
    trained: bool  # False: found in the cache


@dataclass(frozen=True)
class FoldData:
    """A fold's cases by pseudonymous scan id, and their content hashes."""

    scans: FoldScans
    cases: dict[str, ClassifierCase]
    hashes: dict[str, str]  # scan id -> "<input hash>:<mask hash>"

    def of(self, ids: tuple[str, ...]) -> list[ClassifierCase]:
        return [self.cases[scan_id] for scan_id in ids if scan_id in self.cases]

    def set_cases(self, set_: str) -> list[ClassifierCase]:
        """The fold's validation ("val") or test scans."""
        return self.of(self.scans.val if set_ == "val" else self.scans.test)


def fold_data(run: StageRun, fold: int) -> FoldData:
    """Cases of one fold from the split, groups and pre-processed tables."""
    require_tables(run.layout, "splits", "groups", "preprocessed")
    splits = read_table(run.layout, "splits")
    scans = fold_scans(splits, fold)
    groups = read_table(run.layout, "groups").set_index("scan_id")
    inputs = read_table(run.layout, "preprocessed").set_index("scan_id")
    patients = dict(zip(splits["scan_id"].astype(str), splits["patient_id"].astype(str),
                        strict=True))
    cases = cases_from_tables((*scans.train, *scans.val, *scans.test), groups, inputs,
                              lambda path: partial(open_npy, run.layout.resolve(path)),
                              patients)
    hashes = {scan_id: ":".join(str(inputs.at[scan_id, column])
                                for column in ("input_hash", "infection_hash"))
              for scan_id in cases}
    return FoldData(scans, cases, hashes)


def training_inputs(data: FoldData, config: TrainConfig, fold: int, branch: str) -> StageItems:
    """The classifier-train item of one (fold, branch): everything that changes the model
    (the training scans only: the fold's validation scans never reach training)."""
    train = data.of(data.scans.train)
    inputs = {f"train:{c.scan_id}": f"{data.hashes[c.scan_id]}:{c.label}:{c.sampling_group}"
                                    f":{c.patient_id}" for c in train}
    inputs |= {"branch": branch, "fold": str(fold), "seed": str(config.seed)}
    return StageItems(TRAIN_STAGE, VERSION, config.training_fingerprint(),
                      [MapItem(f"fold {fold} {branch}", inputs, (fold, branch, train))])


def prediction_inputs(data: FoldData, model: Manifest, set_: str) -> StageItems:
    """The classifier-predict item of a model's predictions on its validation fold or the
    test set."""
    cases = data.set_cases(set_)
    inputs = {c.scan_id: data.hashes[c.scan_id] for c in cases}
    return StageItems(PREDICT_STAGE, VERSION, "-", [MapItem(
        set_, inputs | {"model": model.outputs["model"]["sha256"], "set": set_}, (cases,))])


@task(name="train_branch_task", cache_policy=NO_CACHE, persist_result=False)
def train_branch_task(data_root: Path, config: TrainConfig, fold: int, branch: str,
                      device: str, run_id: str | None = None,
                      cluster: TrainingCluster | None = None) -> BranchOutcome:
    """Train (or find) one branch of one fold; predict its validation and test scans.

    The training itself runs here on `device`, or, with `cluster`, on a worker of that
    Dask cluster that has its resources (e.g. a GPU); the device is then resolved on
    the worker. Either way it resumes from the model's `last.pt` in the data root, so a
    training whose machine was lost finishes elsewhere from its last epoch.
    """
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        data = fold_data(run, fold)
        spec = training_inputs(data, config, fold, branch)
        item = spec.items[0]
        key = spec.of(item).key[:16]
        fresh = TRAIN_STAGE in run.refresh  # a refreshed training starts over
        job = partial(train_and_save, str(run.layout.root), config,
                      cluster.device if cluster else device, key, fresh)
        if cluster is None:
            compute = partial(_train_here, job, config, logger)
        else:
            logger.info("fold %d %s: training on the Dask cluster (resources %s)", fold,
                        branch, cluster.resources)
            compute = job
        trained = cached_map(run, spec, compute=compute,
                             finish=partial(_training_manifest, run, key),
                             address=cluster.address if cluster else None,
                             resources=cluster.resources if cluster else None,
                             description=f"training fold {fold} {branch}", record=True)
        if item.name in trained.errors:  # bad input, e.g. an empty sampling group
            raise trained.errors[item.name]
        model = trained.manifests[item.name]
        predictions = {set_: found for set_ in PREDICTION_SETS
                       if (found := _predict_set(run, config, model, data, device, set_,
                                                 cluster))}
    logger.info("fold %d %s: kept epoch %s of %s (%s)", fold, branch,
                model.data["best_epoch"], model.data["epochs"],
                f"trained on {model.data['worker']}" if trained.computed else "from cache")
    return BranchOutcome(fold, branch, key, model, predictions, bool(trained.computed))


def _train_here(job: Any, config: TrainConfig, logger: Any, fold: int, branch: str,
                train: list[ClassifierCase]) -> dict[str, Any]:
    """The training in this process, with per-epoch progress."""
    progress = StageProgress(f"training fold {fold} {branch} ({len(train)} scans)",
                             config.epochs, unit="epochs",
                             artifact_key=f"train-fold-{fold}-{branch.replace('_', '-')}")

    def on_epoch(report: Any) -> None:
        inner = (f", inner AUC {report.select_auc:.3f}"
                 if config.epoch_selection == "inner" else "")
        progress.advance(note=f"loss {report.loss:.3f}{inner}")

    with progress:
        summary: dict[str, Any] = job(fold, branch, train, log=logger.info, on_epoch=on_epoch)
    return summary


def _training_manifest(run: StageRun, key: str, item: MapItem, _key: str,
                       summary: dict[str, Any]) -> Manifest:
    """The model's manifest, made in the task's process from the job's summary."""
    return Manifest(TRAIN_STAGE, "", {
        "model": artifact(run.layout, run.layout.checkpoint(MODEL, key, "best"), run.memo),
        "history": artifact(run.layout, run.layout.training_history(MODEL, key), run.memo),
    }, dict(summary))


def _predict_set(run: StageRun, config: TrainConfig, model: Manifest, data: FoldData,
                 device: str, set_: str, cluster: TrainingCluster | None = None
                 ) -> Manifest | None:
    """The model's predictions on its validation fold or the test set (cached by
    checkpoint and inputs), here or on the training cluster; None when the set has no
    scans."""
    spec = prediction_inputs(data, model, set_)
    item = spec.items[0]
    if not item.args[0]:
        return None
    key = model.key[:16]
    path = run.layout.model_dir(MODEL, key) / f"{set_}-{hash_json(item.inputs)[:12]}.parquet"
    compute = partial(predict_and_save, config, cluster.device if cluster else device,
                      str(model.output_path(run.layout, "model")), str(path), data.scans.fold,
                      str(model.data["branch"]), set_, key)

    def finish(_item: MapItem, _key: str, _result: Any) -> Manifest:
        return Manifest(PREDICT_STAGE, "", {"predictions": artifact(run.layout, path, run.memo)})

    return cached_map(run, spec, compute=compute, finish=finish,
                      address=cluster.address if cluster else None,
                      resources=cluster.resources if cluster else None,
                      description=f"predicting fold {data.scans.fold} {set_}"
                      ).manifests[set_]


def find_branch(run: StageRun, data: FoldData, config: TrainConfig, fold: int,
                branch: str) -> BranchOutcome | None:
    """The (fold, branch) model trained on the current data, when there is one, with
    whichever of its predictions are cached."""
    spec = training_inputs(data, config, fold, branch)
    key = spec.of(spec.items[0]).key
    model = run.cache.lookup(TRAIN_STAGE, key)
    if model is None:
        return None
    predictions = {}
    for set_ in PREDICTION_SETS:
        wanted = prediction_inputs(data, model, set_)
        item = wanted.items[0]
        found = run.cache.lookup(PREDICT_STAGE, wanted.of(item).key) if item.args[0] else None
        if found is not None:
            predictions[set_] = found
    return BranchOutcome(fold, branch, key[:16], model, predictions, trained=False)


def complete(outcome: BranchOutcome, data: FoldData) -> bool:
    """Whether every prediction set with scans has its predictions."""
    return all(set_ in outcome.predictions for set_ in PREDICTION_SETS
               if data.set_cases(set_))


@task(name="find_trained_task", cache_policy=NO_CACHE, persist_result=False)
def find_trained_task(data_root: Path, config: TrainConfig, pairs: list[tuple[int, str]],
                      run_id: str | None = None) -> list[tuple[int, str]]:
    """The (fold, branch) pairs whose model and predictions are all cached for this run
    (not refreshed): their training tasks only read, so they need no GPU slot."""
    found = []
    with StageRun.open(data_root, run_id) as run:
        folds = {fold: fold_data(run, fold) for fold in {fold for fold, _ in pairs}}
        for fold, branch in pairs:
            if TRAIN_STAGE in run.refresh or PREDICT_STAGE in run.refresh:
                continue
            outcome = find_branch(run, folds[fold], config, fold, branch)
            if outcome is not None and complete(outcome, folds[fold]):
                found.append((fold, branch))
    return found


def run_row(outcome: BranchOutcome) -> dict[str, Any]:
    """The `training_runs` row of a model."""
    data, model = outcome.train.data, outcome.train.outputs["model"]
    return {"fold": outcome.fold, "branch": outcome.branch, "model_key": outcome.model_key,
            "sampler_weights": json.dumps(data["sampler_weights"], sort_keys=True),
            "epoch_selection": data["epoch_selection"], "best_epoch": data["best_epoch"],
            "select_auc": data["select_auc"], "epochs": data["epochs"],
            "seconds": data["seconds"], "device": data["device"], "n_train": data["n_train"],
            "n_fit": data["n_fit"], "n_select": data["n_select"],
            **{k: data.get(k, v) for k, v in UNCALIBRATED.items()},
            "checkpoint_path": model["path"], "checkpoint_hash": model["sha256"]}


def history_rows(run: StageRun, outcome: BranchOutcome) -> list[dict[str, Any]]:
    """The `training_history` rows of a model, one per epoch."""
    history = json.loads(outcome.train.output_path(run.layout, "history").read_text())
    return [{"fold": outcome.fold, "branch": outcome.branch, "model_key": outcome.model_key,
             **{k: item[k] for k in ("epoch", "loss", "loss_c", "loss_ex", "select_auc",
                                      "select_loss", "lr", "seconds")}} for item in history]
