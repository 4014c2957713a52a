"""Splits stage and split audit: `scans` + `groups` -> `splits`, and the audit reports.

Both are cached by content (stage contract). The split key holds the hashes of the
scans and groups tables, the SplitConfig fingerprint, the current split version
(the previous assignment) and the reshuffle flag. Without reshuffle, known patients
keep set and fold (and the split keeps its seed), so a split is a fixed point: its
manifest is also stored under the key a plain rerun will compute, which makes that
rerun a verified cache hit. Every version is kept as `splits/versions/<version>.parquet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SplitConfig
from dsan_core.splits import make_splits, partition_counts, unseen_patients
from dsan_core.splits.audit import audit_splits, audit_summary_lines
from storage.atomic import write_bytes, write_json, write_text
from storage.layout import DataLayout
from storage.stage_cache import CONFIG, INPUTS, Manifest, artifact
from storage.tables import read_split_version, read_table, require_tables, table_exists, write_table
from tasks._common.contract import StageInputs, StageRun, cached_stage

STAGE = "split"
AUDIT_STAGE = "audit-splits"
#: Bump when the split table or the reports would change for the same inputs.
VERSION = "1"
REPORT_STAGE = "splits"
#: Leak / moved-patient lines shown in a summary (the reports hold them all).
SUMMARY_ROWS = 20
_ARTIFACT_TABLES = ("overview", "sampling_groups", "ss_weights", "balance")


@dataclass(frozen=True)
class SplitOutcome:
    """What `split_task` did: the version, what it extended, counts per partition."""

    stage: Manifest
    version: str
    previous_version: str  # "-" when there was none
    reshuffled: bool
    new_patients: int
    scans: int
    partitions: dict[str, tuple[int, int]]  # name -> (scans, patients)

    @property
    def cache_hit(self) -> bool:
        return bool(self.stage.data.get("cache_hit"))

    def summary(self) -> list[str]:
        version, previous = self.version[:12], self.previous_version[:12]
        if self.reshuffled:
            head = f"RESHUFFLED: new split version {version} (was {previous}); patients may move"
        elif self.previous_version in ("-", self.version):
            head = f"split version {version}"
        else:
            head = f"split version {version} (extends {previous}; nobody moved)"
        parts = ", ".join(f"{name} {scans} scans / {patients} patients"
                          for name, (scans, patients) in self.partitions.items())
        return [f"{head} ({'from cache' if self.cache_hit else 'computed'})",
                f"{self.scans} scans; {self.new_patients} new patient(s) placed", parts]


def _current_split(layout: DataLayout) -> pd.DataFrame | None:
    if not table_exists(layout, "splits"):
        return None
    previous = read_table(layout, "splits")
    return None if previous.empty else previous


def _version_of(split: pd.DataFrame | None) -> str:
    return "-" if split is None else str(split["split_version"].iloc[0])


def split_inputs(run: StageRun, config: SplitConfig, reshuffle: bool = False) -> StageInputs:
    """The split stage's key: the scans and groups tables, the current split version ("-"
    when there is none, or an empty table), whether to reshuffle (only when there is a
    split to reshuffle) and the config."""
    layout = run.layout
    require_tables(layout, "scans", "groups")
    previous = _current_split(layout)
    inputs = {name: run.memo.hash_file(layout.table(name)) for name in ("scans", "groups")}
    inputs |= {"previous": _version_of(previous),
               "reshuffle": "yes" if reshuffle and previous is not None else "no"}
    return StageInputs(STAGE, VERSION, config.fingerprint(), inputs)


def _make_split(run: StageRun, key: str, config: SplitConfig, previous: pd.DataFrame | None,
                spec: StageInputs) -> Manifest:
    """Write the split table and its frozen version file; also store the manifest under
    the key a plain rerun on the same inputs will compute (see the module docstring)."""
    layout = run.layout
    reshuffle = spec.inputs["reshuffle"] == "yes"
    effective = config
    if previous is not None and not reshuffle:  # a version keeps its seed
        effective = config.model_copy(update={"seed": int(previous["seed"].iloc[0])})
    result = make_splits(read_table(layout, "scans"), read_table(layout, "groups"), effective,
                         previous=previous, reshuffle=reshuffle)
    write_table(layout, "splits", result.table)
    frozen = layout.split_version(result.version)
    write_bytes(frozen, layout.table("splits").read_bytes())
    manifest = Manifest(STAGE, key, {
        "splits": artifact(layout, layout.table("splits"), run.memo),
        "version": artifact(layout, frozen, run.memo)}, {
        "version": result.version, "previous_version": _version_of(previous),
        "reshuffled": result.reshuffled, "scans": len(result.table),
        "new_patients": unseen_patients(result, previous),
        "partitions": partition_counts(result.table)})
    rerun = replace(spec, inputs={**spec.inputs, "previous": result.version, "reshuffle": "no"})
    if rerun.key != key:
        run.cache.store(replace(manifest, key=rerun.key, data={
            **manifest.data, "previous_version": result.version, "reshuffled": False,
            "new_patients": 0, INPUTS: dict(rerun.inputs), CONFIG: rerun.config_hash}))
    return manifest


@task(name="split_task", cache_policy=NO_CACHE, persist_result=False)
def split_task(config: SplitConfig, data_root: Path, reshuffle: bool = False,
               run_id: str | None = None) -> SplitOutcome:
    """Assign scans to test / TV folds per patient; write `splits` and its version file."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        spec = split_inputs(run, config, reshuffle)
        previous = _current_split(run.layout)

        def compute(key: str) -> Manifest:
            return _make_split(run, key, config, previous, spec)

        stage = cached_stage(run, spec, compute=compute, logger=logger)
    data = stage.data
    outcome = SplitOutcome(stage, data["version"], str(data["previous_version"]),
                           bool(data["reshuffled"]), int(data["new_patients"]), int(data["scans"]),
                           {k: (int(v[0]), int(v[1])) for k, v in data["partitions"].items()})
    if outcome.reshuffled:
        logger.warning("RESHUFFLED: new split version %s replaces %s; patients may have moved",
                       outcome.version[:12], outcome.previous_version[:12])
    logger.info("split version %s: %d new patient(s) placed", outcome.version[:12],
                outcome.new_patients)
    return outcome


# --- audit -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditOutcome:
    """The audit's verdict, where its reports are, and its summary lines."""

    stage: Manifest
    has_leakage: bool
    report: str  # Markdown report, relative to the data root
    json: str
    leaks: tuple[dict[str, Any], ...]  # the first SUMMARY_ROWS leaks
    lines: tuple[str, ...]

    def summary(self) -> list[str]:
        return list(self.lines)


def _publish(markdown: str, report: dict[str, Any]) -> None:
    """Prefect artifacts: the Markdown report and the main tables."""
    create_markdown_artifact(markdown=markdown, key="split-audit-report",
                             description="split audit (pseudonymous ids only)")
    tables = {name: report["tables"].get(name) for name in _ARTIFACT_TABLES}
    tables["leaks"] = report["leaks"] or None
    tables["moved"] = report["diff"]["moved"] if report["diff"] else None
    for name, rows in tables.items():
        if rows:
            create_table_artifact(table=rows, key=f"split-audit-{name.replace('_', '-')}",
                                  description=f"split audit: {name.replace('_', ' ')}")


def audit_inputs(run: StageRun, config: SplitConfig, against: str | None = None) -> StageInputs:
    """The split audit's key: the splits, scans and groups tables, the split version it
    is compared `against` (a full version id, or none) and the config."""
    layout = run.layout
    require_tables(layout, "splits", "scans", "groups")
    inputs = {name: run.memo.hash_file(layout.table(name))
              for name in ("splits", "scans", "groups")}
    inputs["against"] = (run.memo.hash_file(layout.split_version(against))
                         if against is not None else "-")
    return StageInputs(AUDIT_STAGE, VERSION, config.fingerprint(), inputs)


@task(name="audit_splits_task", cache_policy=NO_CACHE, persist_result=False)
def audit_splits_task(config: SplitConfig, data_root: Path, against: str | None = None,
                      run_id: str | None = None) -> AuditOutcome:
    """Audit the current split (leakage, distributions, diff); write the MD/JSON reports."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        layout = run.layout
        earlier = read_split_version(layout, against) if against is not None else None
        spec = audit_inputs(run, config, earlier[0] if earlier is not None else None)

        def compute(key: str) -> Manifest:
            report = audit_splits(read_table(layout, "splits"), read_table(layout, "scans"),
                                  read_table(layout, "groups"), config,
                                  against=earlier[1] if earlier is not None else None)
            # An edited table is audited under its content's version: the report of the
            # version it claims stays as it was.
            name = (f"audit-{report.content_version}-edited" if report.edited
                    else f"audit-{report.split_version}")
            if earlier is not None:
                name += f"--against-{earlier[0][:12]}"
            md = layout.report(REPORT_STAGE, name + ".md")
            js = layout.report(REPORT_STAGE, name + ".json")
            write_text(md, report.to_markdown())
            write_json(js, report.to_json_dict())
            return Manifest(AUDIT_STAGE, key, {"markdown": artifact(layout, md, run.memo),
                                               "json": artifact(layout, js, run.memo)},
                            {"has_leakage": report.has_leakage})

        stage = cached_stage(run, spec, compute=compute, logger=logger)
    md_rel, json_rel = stage.outputs["markdown"]["path"], stage.outputs["json"]["path"]
    markdown = layout.resolve(md_rel).read_text()
    report = json.loads(layout.resolve(json_rel).read_text())
    _publish(markdown, report)
    summary = audit_summary_lines(report, md_rel, SUMMARY_ROWS)
    (logger.error if report["has_leakage"] else logger.info)("%s", summary[0])
    return AuditOutcome(stage, bool(report["has_leakage"]), md_rel, json_rel,
                        tuple(report["leaks"][:SUMMARY_ROWS]), tuple(summary))
