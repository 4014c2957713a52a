"""`dsan status`: per pipeline stage, cached / stale / never run, and for stale what
changed, computed like the stages compute their keys but without running anything.
It reads tables, manifests and the hash memo (DICOM files are only stat-ed).

`verify_outputs` is the slow, thorough check after a storage incident: it rehashes every
output a manifest names and corrects the memo where the bytes changed, so those stages
show as stale and the next run recomputes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dsan_core.branches import TRAINED
from dsan_core.config import PipelineConfig
from dsan_core.dicom import key_fingerprint, list_export, resolve_pseudonym_key
from dsan_core.errors import DsanError
from storage.hashing import sha256_file, stat_key
from storage.inputs import ExportLocation
from storage.lineage import read_lineage
from storage.stage_cache import CONFIG, INPUTS, ITEM, Manifest, stage_key
from storage.tables import read_table, table_exists
from tasks import ensemble as ensemble_task
from tasks import evaluation as evaluation_task
from tasks import ingest as ingest_task
from tasks import preprocess as preprocess_task
from tasks import segmentation as segmentation_task
from tasks import splits as splits_task
from tasks import training as training_task
from tasks._common.contract import MapItem, StageRun, item_key

CACHED, STALE, NEVER = "cached", "stale", "never run"


@dataclass(frozen=True)
class StageStatus:
    stage: str
    state: str  # cached | stale | never run
    detail: str = ""


def _explain(inputs: Mapping[str, str], config: str, stored: Manifest | None) -> str:
    """What differs from the newest stored computation of the same stage or item."""
    if stored is None or INPUTS not in stored.data:
        return "no earlier computation to compare with"
    before: dict[str, str] = stored.data[INPUTS]
    changed = sorted(k for k in inputs.keys() & before.keys() if inputs[k] != before[k])
    added, gone = sorted(inputs.keys() - before.keys()), sorted(before.keys() - inputs.keys())
    parts = []
    if changed:
        parts.append(f"{_names(changed)} changed")
    if added:
        parts.append(f"{_names(added)} new")
    if gone:
        parts.append(f"{_names(gone)} gone")
    if not parts:
        parts.append("config changed" if stored.data.get(CONFIG) != config
                     else "code version changed")
    return ", ".join(parts)


def _names(keys: list[str]) -> str:
    """'volume', or '3 train scans' for per-scan inputs like 'train:X-...'."""
    kinds = Counter(k.split(":", 1)[0] if ":" in k else k for k in keys)
    return ", ".join(f"{n} {kind} scans" if n > 1 or ":" in next(iter(keys)) else kind
                     for kind, n in kinds.items())


def _stage(run: StageRun, stage: str, version: str, config: str,
           inputs: Mapping[str, str]) -> tuple[str, str]:
    key = stage_key(stage, version, config, inputs)
    if run.cache.lookup(stage, key) is not None:
        return CACHED, ""
    stored = run.cache.stored(stage)
    if not stored:
        return NEVER, ""
    return STALE, _explain(inputs, config, stored[0])


def _items(run: StageRun, items: list[MapItem], stage: str, version: str,
           config: str) -> tuple[str, str]:
    """Cached when every item is; else how many are stale and why, in a few words."""
    stored = run.cache.stored(stage)
    if not stored:
        return NEVER, ""
    newest: dict[str, Manifest] = {}
    for manifest in stored:
        newest.setdefault(str(manifest.data.get(ITEM, "")), manifest)
    reasons: Counter[str] = Counter()
    for item in items:
        if run.cache.lookup(stage, item_key(item, stage, version, config)) is None:
            earlier = newest.get(item.name)
            reasons["new" if earlier is None else
                    _explain(item.inputs, config, earlier)] += 1
    if not reasons:
        return CACHED, f"{len(items)} items"
    return STALE, "; ".join(f"{n} of {len(items)}: {why}" for why, n in reasons.most_common(3))


def pipeline_status(run: StageRun, config: PipelineConfig,
                    export: ExportLocation | None = None) -> list[StageStatus]:
    """Every stage's status, in pipeline order; after a stale stage the later ones say so."""
    checks: list[tuple[str, Callable[[], tuple[str, str]]]] = [
        ("ingest", lambda: _ingest(run, config, export)),
        ("train-seg", lambda: _train_seg(run, config)),
        ("segment", lambda: _segment(run, config)),
        ("split", lambda: _split(run, config)),
        ("preprocess", lambda: _preprocess(run, config)),
        ("train", lambda: _train(run, config)),
        ("ensemble", lambda: _ensemble(run, config)),
        ("evaluate", lambda: _evaluate(run, config)),
    ]
    out: list[StageStatus] = []
    upstream = ""
    for name, check in checks:
        try:
            state, detail = check()
        except DsanError as error:  # a missing table: the stage cannot run yet
            state, detail = NEVER, str(error)
        if upstream and state == CACHED:
            state, detail = STALE, f"after {upstream}"
        elif state == STALE and not upstream:
            upstream = name
        out.append(StageStatus(name, state, detail))
    return out


def _ingest(run: StageRun, config: PipelineConfig,
            export: ExportLocation | None) -> tuple[str, str]:
    if not run.cache.stored(ingest_task.STAGE):
        return NEVER, ""
    if export is None:
        return CACHED, "export not checked (give --dicom-root and --labels)"
    files = list_export(export.dicom_root)
    unknown = sum(run.memo.lookup(stat_key(p)) is None for p in files)
    if unknown:
        return STALE, f"{unknown} of {len(files)} DICOM files new or changed"
    fingerprint = ingest_task.export_fingerprint(run, export, files)
    key = resolve_pseudonym_key(config.ingest, _key_env())
    return _stage(run, ingest_task.STAGE, ingest_task.VERSION,
                  config.ingest.fingerprint() + key_fingerprint(key), {"export": str(fingerprint)})


def _key_env() -> str | None:
    import os

    return os.environ.get(ingest_task.KEY_ENV)


def _train_seg(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    # As train_segmenter_task decides: every method trains when there is a scan to train on.
    plan = segmentation_task.vbnet_training_plan(run, config.segmentation)
    if not plan.trainable and config.segmentation.method != "vbnet":
        return CACHED, f"not used ({plan.why_not()})"
    return _stage(run, segmentation_task.TRAIN_STAGE, segmentation_task.TRAIN_VERSION,
                  config.segmentation.vbnet.training_fingerprint(), plan.inputs)


def _segment(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    seg = config.segmentation
    threshold: float | None = None
    version = seg.method
    if seg.method == "vbnet":
        version = segmentation_task.vbnet_training_plan(run, seg).version
        if seg.vbnet.infection_threshold == "calibrate":
            models = [m for m in run.cache.stored(segmentation_task.TRAIN_STAGE)
                      if m.data.get("model_version") == version]
            if not models:
                return STALE, "waits for the VB-Net"
            threshold = float(models[0].data["infection_threshold"])
        else:
            threshold = float(seg.vbnet.infection_threshold)
    elif seg.method == "classical":
        version = seg.classical.fingerprint()
    tag = f"{seg.method}__{version}" if seg.method in ("vbnet", "classical") else seg.method
    scans = read_table(run.layout, "scans").sort_values("scan_id", ignore_index=True)
    items, _ = segmentation_task.segment_items(run, seg, scans, version, threshold)
    return _items(run, items, segmentation_task.SCAN_STAGE, segmentation_task.VERSION, tag)


def _split(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    inputs = {n: run.memo.hash_file(run.layout.table(n)) for n in ("scans", "groups")}
    previous = (str(read_table(run.layout, "splits")["split_version"].iloc[0])
                if table_exists(run.layout, "splits") else "-")
    return _stage(run, splits_task.STAGE, splits_task.VERSION, config.split.fingerprint(),
                  {**inputs, "previous": previous, "reshuffle": "no"})


def _preprocess(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    items, _, _ = preprocess_task.preprocess_items(run, config.preprocess)
    return _items(run, items, preprocess_task.SCAN_STAGE, preprocess_task.VERSION,
                  config.preprocess.fingerprint())


def _train(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    items = []
    for fold in range(config.split.n_folds):
        data = training_task.fold_data(run, fold)
        items += [training_task.training_item(data, config.train, fold, b) for b in TRAINED]
    return _items(run, items, training_task.TRAIN_STAGE, training_task.VERSION,
                  config.train.training_fingerprint())


def _ensemble(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    trained = run.layout.prediction_part("trained")
    if not trained.exists():
        return NEVER, ""
    inputs = {"trained": run.memo.hash_file(trained),
              "groups": run.memo.hash_file(run.layout.table("groups"))}
    return _stage(run, ensemble_task.STAGE, ensemble_task.VERSION, config.ensemble.fingerprint(),
                  inputs)


def _evaluate(run: StageRun, config: PipelineConfig) -> tuple[str, str]:
    inputs = evaluation_task.evaluation_inputs(run)
    return _stage(run, evaluation_task.STAGE, evaluation_task.VERSION,
                  config.evaluation.fingerprint() + config.train.training_fingerprint(), inputs)


def last_run_times(run: StageRun) -> dict[str, str]:
    """The end of each internal stage's last lineage row (local time, to the second)."""
    rows = read_lineage(run.layout)
    return {str(stage): f"{ended.astimezone():%Y-%m-%d %H:%M:%S}"
            for stage, ended in zip(rows["stage"], rows["ended_at"], strict=True)}


def verify_outputs(run: StageRun) -> list[str]:
    """Rehash every output of every stored manifest; where the bytes no longer match,
    correct the memo (the next lookup then sees the change). Returns "stage: output"
    for each mismatch or missing file."""
    found = []
    cache = run.layout.root / "cache"
    folders = sorted(p for p in cache.iterdir() if p.is_dir()) if cache.exists() else []
    for folder in folders:
        claimed: set[str] = set()  # an output rewritten later belongs to the newest manifest
        for manifest in run.cache.stored(folder.name):
            for name, ref in manifest.outputs.items():
                if ref["path"] in claimed:
                    continue
                claimed.add(ref["path"])
                path = run.layout.resolve(ref["path"])
                if not path.exists():
                    found.append(f"{manifest.stage}: {ref['path']} is missing")
                    continue
                actual = sha256_file(path)
                if actual != ref["sha256"]:
                    run.memo.update({stat_key(path): actual})
                    found.append(f"{manifest.stage}: {ref['path']} ({name}) changed")
    return sorted(set(found))
