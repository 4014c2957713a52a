"""The stage contract, as the task layer applies it (see ARCHITECTURE.md).

`StageRun` bundles the data root's layout, the file-hash memo, the stage cache
and the run id; `cached_stage` looks a key up, verifies the outputs, computes
on a miss, stores the manifest and appends the lineage row either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dsan_core.errors import StageError
from storage.hashing import FileHashMemo
from storage.layout import DataLayout
from storage.lineage import LineageRow, new_run_id, record_lineage, utcnow
from storage.stage_cache import Manifest, StageCache, stage_key
from storage.tables import table_exists


@dataclass
class StageRun:
    layout: DataLayout
    memo: FileHashMemo
    cache: StageCache
    run_id: str

    @classmethod
    def open(cls, data_root: Path | str, run_id: str | None = None) -> StageRun:
        layout = DataLayout(Path(data_root))
        memo = FileHashMemo(layout.file_hash_memo)
        return cls(layout, memo, StageCache(layout, memo), run_id or new_run_id())

    def close(self) -> None:
        self.memo.save()

    def __enter__(self) -> StageRun:
        return self

    def __exit__(self, *exc: object) -> None:
        # The memo is saved even when the stage fails: hashes already computed stay known.
        self.close()


def require_tables(layout: DataLayout, *names: str) -> None:
    """Raise StageError naming the first of the tables `names` that is not written yet."""
    for name in names:
        if not table_exists(layout, name):
            raise StageError(f"table {name!r} is missing: run the stage that writes it first")


def cached_stage(
    run: StageRun,
    *,
    stage: str,
    version: str,
    config_hash: str,
    inputs: Mapping[str, str],
    compute: Callable[[str], Manifest],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    record: bool = True,
) -> Manifest:
    """Return the verified cached manifest for these inputs, or compute and store it.

    `compute(key)` must write its outputs atomically and return their manifest.
    `record=False` skips the lineage row (for per-item caches inside one stage).
    """
    key = stage_key(stage, version, config_hash, inputs)
    started = utcnow()
    manifest = run.cache.lookup(stage, key)
    hit = manifest is not None
    if manifest is None:
        manifest = compute(key)
        if manifest.key != key or manifest.stage != stage:
            manifest = replace(manifest, stage=stage, key=key)
        run.cache.store(manifest)
    if logger is not None and record:
        logger.info("%s: %s (key %s)", stage, "cache hit" if hit else "computed", key[:12])
    if record:
        record_lineage(
            run.layout,
            LineageRow(
                run_id=run.run_id,
                stage=stage,
                key=key,
                cache_hit=hit,
                input_hashes=inputs,
                output_hashes=manifest.output_hashes(),
                config_hash=config_hash,
                started_at=started,
                ended_at=utcnow(),
            ),
        )
    return replace(manifest, data={**manifest.data, "cache_hit": hit})
