"""The stage contract, as the task layer applies it (see ARCHITECTURE.md).

`StageRun` bundles the data root's layout, the file-hash memo, the stage cache
and the run id. `StageInputs` is what a stage's cache key is made of, `StageItems`
the same per item; each stage computes them in ONE function of its task module,
which both its task and `dsan status` (`tasks.status`) call, so the key a run uses
and the key status checks cannot drift apart. `cached_stage` looks a key up,
verifies the outputs, computes on a miss, stores the manifest and appends the
lineage row either way; `cached_map` does the same per item of a stage with many
independent items (a series, a scan, a fold x branch), computing the misses locally
or on Dask and storing each item's manifest the moment it completes, so a killed run
resumes.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from dsan_core.errors import DsanError, ItemFailed
from storage.hashing import FileHashMemo
from storage.layout import DataLayout
from storage.lineage import LineageRow, new_run_id, record_lineage, utcnow
from storage.run_options import read_run_options
from storage.stage_cache import CONFIG, INPUTS, ITEM, Manifest, StageCache, stage_key
from tasks._common.dask_map import WorkerError, map_on_dask
from tasks._common.progress import StageProgress


@dataclass
class StageRun:
    """One task's view of the data root. `started` (when the task opened it) starts
    the stage's lineage row, so the row times the whole stage, not its last write."""

    layout: DataLayout
    memo: FileHashMemo
    cache: StageCache
    run_id: str
    started: datetime = field(default_factory=utcnow)
    #: Internal stage names this run recomputes even when cached (`dsan run --refresh`).
    refresh: frozenset[str] = frozenset()

    @classmethod
    def open(cls, data_root: Path | str, run_id: str | None = None) -> StageRun:
        layout = DataLayout(Path(data_root))
        memo = FileHashMemo(layout.file_hash_memo)
        run_id = run_id or new_run_id()
        return cls(layout, memo, StageCache(layout, memo), run_id,
                   refresh=frozenset(read_run_options(layout, run_id).get("refresh", [])))

    def lookup(self, stage: str, key: str) -> Manifest | None:
        """The verified cached manifest, unless this run refreshes `stage`."""
        return None if stage in self.refresh else self.cache.lookup(stage, key)

    def close(self) -> None:
        self.memo.save()

    def __enter__(self) -> StageRun:
        return self

    def __exit__(self, *exc: object) -> None:
        # The memo is saved even when the stage fails: hashes already computed stay known.
        self.close()


@dataclass(frozen=True)
class StageInputs:
    """What one stage's cache key is made of (the stage contract, step 1): the stage's
    name, its code version, its config fingerprint and its inputs' content hashes."""

    stage: str
    version: str
    config_hash: str
    inputs: Mapping[str, str]

    @property
    def key(self) -> str:
        return stage_key(self.stage, self.version, self.config_hash, self.inputs)


@dataclass(frozen=True)
class MapItem:
    """One item of a per-item stage. `name` (a pseudonymous id, unique in the stage)
    names it in messages; `inputs` (content hashes) make its cache key; `args` are
    what `compute` receives: paths and small values, picklable for Dask."""

    name: str
    inputs: Mapping[str, str]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class StageItems:
    """The items of a per-item stage and what their keys share: each item's key is a
    `StageInputs` key over the item's own inputs."""

    stage: str
    version: str
    config_hash: str
    items: Sequence[MapItem]

    def of(self, item: MapItem) -> StageInputs:
        return StageInputs(self.stage, self.version, self.config_hash, item.inputs)

    def keys(self) -> dict[str, str]:
        """Item name -> the item's cache key."""
        return {item.name: self.of(item).key for item in self.items}


def cached_stage(
    run: StageRun,
    spec: StageInputs,
    *,
    compute: Callable[[str], Manifest],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    record: bool = True,
) -> Manifest:
    """Return the verified cached manifest for these inputs, or compute and store it.

    `compute(key)` must write its outputs atomically and return their manifest.
    `record=False` skips the lineage row (for per-item caches inside one stage).
    """
    stage, inputs, config_hash = spec.stage, spec.inputs, spec.config_hash
    key = spec.key
    manifest = run.lookup(stage, key)
    hit = manifest is not None
    if manifest is None:
        manifest = compute(key)
        manifest = replace(manifest, stage=stage, key=key, data={
            **manifest.data, INPUTS: dict(inputs), CONFIG: config_hash})
        run.cache.store(manifest)
    if logger is not None and record:
        logger.info("%s: %s (key %s)", stage, "cache hit" if hit else "computed", key[:12])
    if record:
        _record(run, stage, key, hit, inputs, manifest, config_hash)
    return replace(manifest, data={**manifest.data, "cache_hit": hit})


#: Where Dask work goes: a scheduler address, or a callable that gives one (and starts a
#: local cluster on its first call), so a stage with nothing to compute starts none.
DaskAddress = str | Callable[[], str]


def resolve_address(address: DaskAddress) -> str:
    return address if isinstance(address, str) else address()


@dataclass(frozen=True)
class MapResult:
    """Manifests of the items that have outputs (cached or computed), in item order,
    and a reason per item that failed."""

    manifests: dict[str, Manifest] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # item name -> message
    reasons: dict[str, str] = field(default_factory=dict)  # item name -> InputError.reason
    errors: dict[str, DsanError] = field(default_factory=dict)  # item name -> the error
    computed: int = 0
    cached: int = 0


def cached_map(
    run: StageRun,
    spec: StageItems,
    *,
    compute: Callable[..., Any],
    finish: Callable[[MapItem, str, Any], Manifest] | None = None,
    address: DaskAddress | None = None,
    description: str = "",
    unit: str = "",
    artifact_key: str | None = None,
    record: bool = False,
    resources: Mapping[str, float] | None = None,
) -> MapResult:
    """Per item of `spec`: a verified cache hit, or `compute(*item.args)` and its stored
    manifest.

    `compute` runs here (`address` None) or on the Dask scheduler at `address` (then it
    must be a plain, picklable function; `resources` what each item needs of a Dask
    worker, e.g. {"GPU": 1}). `finish(item, key, result)` turns its result
    into the item's Manifest in this process (without `finish`, `compute` returns the
    Manifest). Each manifest is stored as soon as its item completes. A `DsanError` (bad
    input) fails its item alone, its message the reason; any other exception is a bug:
    every item still runs, then `ItemFailed`. `record` appends a lineage row per item
    (for a few expensive items, such as trained models; per-scan stages record tables).
    """
    keys = spec.keys()
    found = _cache_hits(run, spec.stage, spec.items, keys)
    todo = [item for item in spec.items if item.name not in found]
    outcomes = _Outcomes(run, spec, keys, todo, finish, found)
    _run_each(todo, compute, outcomes.accept, address=address,
              description=description or spec.stage, unit=unit, artifact_key=artifact_key,
              resources=resources)
    if outcomes.bugs:
        raise ItemFailed(f"{spec.stage}: {len(outcomes.bugs)} item(s) failed with an unexpected "
                         f"error (a bug; tracebacks in the log): {'; '.join(outcomes.bugs[:5])}")
    manifests = {item.name: found[item.name] for item in spec.items if item.name in found}
    if record:
        _record_items(run, spec.stage, spec.items, keys, manifests,
                      {item.name for item in todo}, spec.config_hash)
    return MapResult(manifests, outcomes.failures, outcomes.reasons, outcomes.errors,
                     computed=len(todo) - len(outcomes.failures),
                     cached=len(spec.items) - len(todo))


@dataclass
class _Outcomes:
    """What `cached_map` collects as its items complete: each result's manifest, stored
    at once (into `found`); each bad input's message, reason and error; each bug."""

    run: StageRun
    spec: StageItems
    keys: Mapping[str, str]
    todo: Sequence[MapItem]
    finish: Callable[[MapItem, str, Any], Manifest] | None
    found: dict[str, Manifest]
    failures: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    errors: dict[str, DsanError] = field(default_factory=dict)
    bugs: list[str] = field(default_factory=list)

    def accept(self, position: int, outcome: Any) -> None:
        item = self.todo[position]
        if isinstance(outcome, WorkerError):
            self._failed(item, outcome)
            return
        key = self.keys[item.name]
        manifest = self.finish(item, key, outcome) if self.finish is not None else outcome
        # Name, inputs and config stay with the manifest: `dsan status` says what changed.
        manifest = replace(manifest, stage=self.spec.stage, key=key, data={
            **manifest.data, ITEM: item.name, INPUTS: dict(item.inputs),
            CONFIG: self.spec.config_hash})
        self.run.cache.store(manifest)
        self.found[item.name] = manifest

    def _failed(self, item: MapItem, outcome: WorkerError) -> None:
        """A DsanError (bad input) fails its item alone; anything else is a bug."""
        if isinstance(outcome.error, DsanError):
            self.failures[item.name] = str(outcome.error)
            self.reasons[item.name] = getattr(outcome.error, "reason", "invalid")
            self.errors[item.name] = outcome.error
            return
        _log_bug(self.spec.stage, item.name, outcome.trace)
        self.bugs.append(f"{item.name} ({type(outcome.error).__name__}: {outcome.error})")


def _run_each(todo: Sequence[MapItem], compute: Callable[..., Any],
              accept: Callable[[int, Any], None], *, address: DaskAddress | None,
              description: str, unit: str, artifact_key: str | None,
              resources: Mapping[str, float] | None = None) -> None:
    """`compute(*item.args)` per item, here or on Dask, each outcome (a result or a
    `WorkerError`) handed to `accept(position, outcome)` as it completes."""
    if address is not None and todo:
        map_on_dask(resolve_address(address), compute, [item.args for item in todo],
                    description=description, unit=unit, artifact_key=artifact_key,
                    on_result=accept, resources=resources)
        return
    with StageProgress(description, len(todo), unit=unit, artifact_key=artifact_key) as progress:
        for position, item in enumerate(todo):
            accept(position, _call(compute, item.args))
            progress.advance()


def _cache_hits(run: StageRun, stage: str, items: Sequence[MapItem],
                keys: Mapping[str, str]) -> dict[str, Manifest]:
    """The items whose key the stage cache holds (verified), by name."""
    found: dict[str, Manifest] = {}
    for item in items:
        hit = run.lookup(stage, keys[item.name])
        if hit is not None:
            found[item.name] = hit
    return found


def _record_items(run: StageRun, stage: str, items: Sequence[MapItem],
                  keys: Mapping[str, str], manifests: Mapping[str, Manifest],
                  computed: set[str], config_hash: str) -> None:
    """A lineage row per item that has a manifest (a cache hit unless in `computed`)."""
    for item in items:
        if item.name in manifests:
            _record(run, stage, keys[item.name], item.name not in computed, item.inputs,
                    manifests[item.name], config_hash)


def _record(run: StageRun, stage: str, key: str, hit: bool, inputs: Mapping[str, str],
            manifest: Manifest, config_hash: str) -> None:
    """The lineage row of a stage (or item): from the task's start to now."""
    record_lineage(run.layout, LineageRow(
        run_id=run.run_id, stage=stage, key=key, cache_hit=hit, input_hashes=inputs,
        output_hashes=manifest.output_hashes(), config_hash=config_hash,
        started_at=run.started, ended_at=utcnow()))


def _call(compute: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        return compute(*args)
    except Exception as error:  # noqa: BLE001 - sorted into bad input or bug by the caller
        return WorkerError(error, traceback.format_exc())


def _log_bug(stage: str, name: str, trace: str) -> None:
    logger = logging.getLogger("dsan")
    try:
        from prefect import get_run_logger

        logger = get_run_logger()  # type: ignore[assignment]
    except Exception:  # noqa: BLE001 - outside a Prefect run: the plain logger
        pass
    logger.error("%s: item %s failed with an unexpected error:\n%s", stage, name, trace)
