"""`dsan status`: per pipeline stage, cached / stale / never run, and for stale what
changed, without running anything. The keys come from the very functions the stages'
tasks compute them with (`StageInputs` / `StageItems`, see `tasks._common.contract`); status
only looks them up. It reads tables, manifests and the hash memo (DICOM files are only
stat-ed).

`verify_outputs` is the slow, thorough check after a storage incident: it rehashes every
output a manifest names and corrects the memo where the bytes changed, so those stages
show as stale and the next run recomputes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dsan_core.branches import TRAINED
from dsan_core.config import PipelineConfig
from dsan_core.dicom import list_export
from dsan_core.errors import DsanError
from storage.hashing import sha256_file, stat_key
from storage.inputs import ExportLocation
from storage.stage_cache import CONFIG, INPUTS, ITEM, Manifest
from tasks import baselines as baselines_task
from tasks import ensemble as ensemble_task
from tasks import evaluation as evaluation_task
from tasks import groups as groups_task
from tasks import ingest as ingest_task
from tasks import preprocess as preprocess_task
from tasks import segmentation as segmentation_task
from tasks import splits as splits_task
from tasks import stages, training_tables
from tasks import training as training_task
from tasks._common.contract import MapItem, StageInputs, StageItems, StageRun

CACHED, STALE, NEVER = "cached", "stale", "never run"


@dataclass(frozen=True)
class StageStatus:
    """A stage's state, what changed, and the cache keys a rerun would look up, by
    internal stage label (one per item for per-item stages): those status could compute
    (a label whose inputs are an earlier label's outputs waits until that one is cached)."""

    stage: str
    state: str  # cached | stale | never run
    detail: str = ""
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _explain(inputs: Mapping[str, str], config: str, stored: Manifest | None) -> str:
    """What differs from a stored computation of the same stage or item."""
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


def _distance(inputs: Mapping[str, str], config: str, stored: Manifest) -> int:
    """How many inputs (and the config) differ from a stored computation's."""
    before: Mapping[str, str] = stored.data.get(INPUTS, {})
    differ = sum(inputs.get(k) != before.get(k) for k in inputs.keys() | before.keys())
    return differ + int(stored.data.get(CONFIG) != config)


def _names(keys: list[str]) -> str:
    """'volume', or '3 train scans' for per-scan inputs like 'train:X-...'."""
    kinds = Counter(k.split(":", 1)[0] if ":" in k else k for k in keys)
    return ", ".join(f"{n} {kind} scans" if n > 1 or ":" in next(iter(keys)) else kind
                     for kind, n in kinds.items())


class _Probe:
    """Looks up the keys the stages compute (`StageInputs`, `StageItems`, from the same
    functions their tasks call) without running anything, and keeps every key it looked
    up, for one stage's check with the pipeline's config (and the export, when given)."""

    def __init__(self, run: StageRun, config: PipelineConfig,
                 export: ExportLocation | None) -> None:
        self.run, self.config, self.export = run, config, export
        self.keys: dict[str, list[str]] = {}

    def stage(self, spec: StageInputs) -> tuple[str, str]:
        self.keys.setdefault(spec.stage, []).append(spec.key)
        if self.run.cache.lookup(spec.stage, spec.key) is not None:
            return CACHED, ""
        stored = self.run.cache.stored(spec.stage)
        if not stored:
            return NEVER, ""
        return STALE, self._why(spec.key, spec.inputs, spec.config_hash, stored)

    def _why(self, key: str, inputs: Mapping[str, str], config_hash: str,
             earlier: list[Manifest]) -> str:
        """Why `key` is no hit: its outputs changed, or what differs from the `earlier`
        computation closest to it (the newest of those that differ least)."""
        same = next((m for m in earlier if m.key == key), None)
        if same is not None:
            return "; ".join(self.run.cache.problems(same)) or "outputs changed"
        if not earlier:
            return "new"
        return _explain(inputs, config_hash, min(earlier, key=lambda m: _distance(
            inputs, config_hash, m)))

    def items(self, *specs: StageItems) -> tuple[str, str, dict[str, Manifest]]:
        """Cached when every item of `specs` (of one stage) is; else how many are stale
        and why, in a few words. Also the cached items' manifests, by item name in item
        order."""
        if not specs:
            return CACHED, "0 items", {}
        stage = specs[0].stage
        hits: dict[str, Manifest] = {}
        missed: list[tuple[MapItem, str, str]] = []  # with its key and config hash
        for spec in specs:
            for item in spec.items:
                key = spec.of(item).key
                self.keys.setdefault(stage, []).append(key)
                hit = self.run.cache.lookup(stage, key)
                if hit is None:
                    missed.append((item, key, spec.config_hash))
                else:
                    hits[item.name] = hit
        total = sum(len(spec.items) for spec in specs)
        stored = self.run.cache.stored(stage)
        if not stored:
            return NEVER, "", hits
        if not missed:
            return CACHED, f"{total} items", hits
        by_item: dict[str, list[Manifest]] = {}
        for manifest in stored:  # newest first
            by_item.setdefault(str(manifest.data.get(ITEM, "")), []).append(manifest)
        reasons = Counter(self._why(key, item.inputs, config_hash, by_item.get(item.name, []))
                          for item, key, config_hash in missed)
        return STALE, "; ".join(f"{n} of {total}: {why}"
                                for why, n in reasons.most_common(3)), hits


def pipeline_status(run: StageRun, config: PipelineConfig,
                    export: ExportLocation | None = None) -> list[StageStatus]:
    """Every stage's status, in pipeline order; after a stale stage the later ones say so."""
    out: list[StageStatus] = []
    upstream = ""
    for name, check in CHECKS.items():
        probe = _Probe(run, config, export)
        try:
            state, detail = check(probe)
        except DsanError as error:  # a missing table: the stage cannot run yet
            state, detail = NEVER, str(error)
        if upstream and state == CACHED:
            state, detail = STALE, f"after {upstream}"
        elif state == STALE and not upstream:
            upstream = name
        out.append(StageStatus(name, state, detail,
                               {label: tuple(keys) for label, keys in probe.keys.items()}))
    return out


def _first_not_cached(*steps: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    """The state of the first step that is not cached (a later step's inputs are an
    earlier one's outputs), else the first step's detail as cached."""
    first = ""
    for number, step in enumerate(steps):
        state, detail = step()
        if state != CACHED:
            return state, detail
        first = detail if number == 0 else first
    return CACHED, first


def _ingest(probe: _Probe) -> tuple[str, str]:
    run, config, export = probe.run, probe.config, probe.export
    if not run.cache.stored(ingest_task.STAGE):
        return NEVER, ""
    if export is None:
        return CACHED, "export not checked (give --dicom-root and --labels)"
    files = list_export(export.dicom_root)
    unknown = sum(run.memo.lookup(stat_key(p)) is None for p in files)
    if unknown:
        return STALE, f"{unknown} of {len(files)} DICOM files new or changed"
    fingerprint = ingest_task.export_fingerprint(run, export, files)
    key = ingest_task.pseudonym_key(config.ingest)
    return probe.stage(ingest_task.ingest_inputs(run, str(fingerprint), config.ingest, key))


def _train_seg(probe: _Probe) -> tuple[str, str]:
    config = probe.config
    # As train_segmenter_task decides: every method trains when there is a scan to train on.
    plan = segmentation_task.vbnet_training_plan(probe.run, config.segmentation)
    if not plan.trainable and config.segmentation.method != "vbnet":
        return CACHED, f"not used ({plan.why_not()})"
    return probe.stage(plan.spec)


def _segment(probe: _Probe) -> tuple[str, str]:
    run, config = probe.run, probe.config
    seg = config.segmentation
    model = None
    if seg.method == "vbnet":
        model = segmentation_task.current_vbnet(run, seg)
        if model is None:
            return (STALE, "waits for the VB-Net") if run.cache.stored(
                segmentation_task.SCAN_STAGE) else (NEVER, "")
    segmenter = segmentation_task.segmenter_id(seg, model)
    items, _ = segmentation_task.segment_items(run, seg, segmenter)
    state, detail, hits = probe.items(items)
    if state != CACHED:
        return state, detail
    table = segmentation_task.infection_table(seg, segmenter, hits)
    return _first_not_cached(
        lambda: (state, detail),
        lambda: probe.stage(segmentation_task.infection_inputs(segmenter, table)),
        lambda: probe.stage(groups_task.groups_inputs(run, config.groups)))


def _split(probe: _Probe) -> tuple[str, str]:
    config = probe.config
    return _first_not_cached(
        lambda: probe.stage(splits_task.split_inputs(probe.run, config.split)),
        lambda: probe.stage(splits_task.audit_inputs(probe.run, config.split)))


def _preprocess(probe: _Probe) -> tuple[str, str]:
    config = probe.config
    items, _, _ = preprocess_task.preprocess_items(probe.run, config.preprocess)
    state, detail, hits = probe.items(items)
    if state != CACHED:
        return state, detail
    table = preprocess_task.preprocessed_table(config.preprocess, hits)
    return _first_not_cached(
        lambda: (state, detail),
        lambda: probe.stage(preprocess_task.preprocessed_inputs(config.preprocess, table)))


def _train(probe: _Probe) -> tuple[str, str]:
    run, train, n_folds = probe.run, probe.config.train, probe.config.split.n_folds
    folds = {fold: training_task.fold_data(run, fold) for fold in range(n_folds)}
    trainings = [(fold, training_task.training_inputs(data, train, fold, branch))
                 for fold, data in folds.items() for branch in TRAINED]
    state, detail, models = probe.items(*(spec for _, spec in trainings))
    if state != CACHED:
        return state, detail
    predictions = [training_task.prediction_inputs(folds[fold], models[spec.items[0].name], s)
                   for fold, spec in trainings for s in training_task.PREDICTION_SETS]
    found, _ = training_tables.trained_models(run, train, n_folds)
    return _first_not_cached(
        lambda: (state, detail),
        lambda: probe.items(*(p for p in predictions if p.items[0].args[0]))[:2],
        lambda: probe.stage(training_tables.tables_inputs(train, found)))


def _ensemble(probe: _Probe) -> tuple[str, str]:
    config = probe.config
    return probe.stage(ensemble_task.ensemble_inputs(probe.run, config.ensemble))


def _evaluate(probe: _Probe) -> tuple[str, str]:
    run, config = probe.run, probe.config
    return _first_not_cached(
        lambda: probe.stage(baselines_task.baselines_inputs(run, config.evaluation)),
        lambda: probe.stage(evaluation_task.evaluation_inputs(run, config.evaluation,
                                                              config.train)))


#: One check per pipeline stage, in order: -> (state, detail).
CHECKS: dict[str, Callable[[_Probe], tuple[str, str]]] = {
    stages.INGEST: _ingest, stages.TRAIN_SEG: _train_seg, stages.SEGMENT: _segment,
    stages.SPLIT: _split, stages.PREPROCESS: _preprocess, stages.TRAIN: _train,
    stages.ENSEMBLE: _ensemble, stages.EVALUATE: _evaluate,
}


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
