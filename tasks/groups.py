"""Group assignment stage: `infection` + `scans` -> the `groups` table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import GroupsConfig
from dsan_core.groups import assign_groups
from storage.schemas import GROUPS
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, require_tables, write_table
from tasks._common.contract import StageInputs, StageRun, cached_stage

STAGE = "groups"
VERSION = "1"


@dataclass(frozen=True)
class GroupsOutcome:
    stage: Manifest
    sampling_groups: dict[str, int]  # scans per sampling group


@task(name="assign_groups_task", cache_policy=NO_CACHE, persist_result=False)
def assign_groups_task(data_root: Path, config: GroupsConfig,
                       run_id: str | None = None) -> GroupsOutcome:
    """Sampling group, analysis bin and ensemble band of every segmented scan."""
    with StageRun.open(data_root, run_id) as run:

        def compute(key: str) -> Manifest:
            scans = read_table(run.layout, "scans")[["scan_id", "label"]]
            ratios = read_table(run.layout, "infection")[["scan_id", "infection_ratio"]]
            groups = assign_groups(scans.merge(ratios, on="scan_id"), config)
            groups = groups[GROUPS.names].sort_values("scan_id", ignore_index=True)
            write_table(run.layout, "groups", groups)
            counts = groups["sampling_group"].value_counts().sort_index()
            return Manifest(STAGE, key,
                            {"groups": artifact(run.layout, run.layout.table("groups"), run.memo)},
                            {"sampling_groups": {str(k): int(v) for k, v in counts.items()}})

        manifest = cached_stage(run, groups_inputs(run, config), compute=compute,
                                logger=get_run_logger())
    return GroupsOutcome(manifest, {k: int(v) for k, v in manifest.data["sampling_groups"].items()})


def groups_inputs(run: StageRun, config: GroupsConfig) -> StageInputs:
    """The groups stage's key: the scans and infection tables and the config."""
    require_tables(run.layout, "scans", "infection")
    return StageInputs(STAGE, VERSION, config.fingerprint(), {
        name: run.memo.hash_file(run.layout.table(name)) for name in ("scans", "infection")})
