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
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SplitConfig
from dsan_core.errors import SchemaError, StageError
from dsan_core.split_audit import audit_splits
from dsan_core.splits import SplitResult, make_splits
from storage.atomic import write_bytes, write_json, write_text
from storage.layout import DataLayout
from storage.schemas import SPLITS
from storage.stage_cache import Manifest, artifact, stage_key
from storage.tables import read_table, table_exists, write_table
from tasks.contract import StageRun, cached_stage

STAGE = "split"
AUDIT_STAGE = "audit-splits"
#: Bump when the split table or the reports would change for the same inputs.
VERSION = "1"
REPORT_STAGE = "splits"
#: Leak / moved-patient lines shown in a summary (the reports hold them all).
SUMMARY_ROWS = 20
_ARTIFACT_TABLES = ("overview", "sampling_groups", "ss_weights", "balance")


def _current_version(layout: DataLayout) -> tuple[pd.DataFrame | None, str]:
    if not table_exists(layout, "splits"):
        return None, "-"
    previous = read_table(layout, "splits")
    if previous.empty:
        return None, "-"
    return previous, str(previous["split_version"].iloc[0])


def _partition_counts(table: pd.DataFrame) -> dict[str, list[int]]:
    """partition name -> [scans, patients]."""
    names = table["fold"].astype("Int64").map(lambda f: "test" if pd.isna(f) else f"fold {f}")
    grouped = table.assign(partition=names.to_numpy()).groupby("partition", sort=True)
    return {str(name): [int(len(part)), int(part["patient_id"].nunique())]
            for name, part in grouped}


def _new_patients(result: SplitResult, previous: pd.DataFrame | None) -> int:
    """Patients absent from the previous split (a reshuffle re-places everyone)."""
    if previous is None or not result.reshuffled:
        return len(result.new_patients)
    known = set(previous["patient_id"].unique().tolist())
    return sum(patient not in known for patient in result.table["patient_id"].unique())


@task(name="split_task", cache_policy=NO_CACHE, persist_result=False)
def split_task(config: SplitConfig, data_root: Path, reshuffle: bool = False,
               run_id: str | None = None) -> dict[str, Any]:
    """Assign scans to test / TV folds per patient; write `splits` and its version file."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        layout = run.layout
        for name in ("scans", "groups"):
            if not table_exists(layout, name):
                raise StageError(f"table {name!r} is missing: run the stage that writes it first")
        previous, previous_version = _current_version(layout)
        reshuffle = reshuffle and previous is not None
        inputs = {"scans": run.memo.hash_file(layout.table("scans")),
                  "groups": run.memo.hash_file(layout.table("groups")),
                  "previous": previous_version, "reshuffle": "yes" if reshuffle else "no"}
        config_hash = config.fingerprint()

        def compute(key: str) -> Manifest:
            effective = config
            if previous is not None and not reshuffle:  # a version keeps its seed
                effective = config.model_copy(update={"seed": int(previous["seed"].iloc[0])})
            result = make_splits(read_table(layout, "scans"), read_table(layout, "groups"),
                                 effective, previous=previous, reshuffle=reshuffle)
            write_table(layout, "splits", result.table)
            frozen = layout.split_version(result.version)
            write_bytes(frozen, layout.table("splits").read_bytes())
            outputs = {"splits": artifact(layout, layout.table("splits"), run.memo),
                       "version": artifact(layout, frozen, run.memo)}
            data = {"version": result.version, "previous_version": previous_version,
                    "reshuffled": result.reshuffled, "scans": len(result.table),
                    "new_patients": _new_patients(result, previous),
                    "partitions": _partition_counts(result.table)}
            # A plain rerun on the same inputs reproduces this table byte for byte.
            rerun_key = stage_key(STAGE, VERSION, config_hash,
                                  {**inputs, "previous": result.version, "reshuffle": "no"})
            if rerun_key != key:
                run.cache.store(Manifest(STAGE, rerun_key, outputs,
                                         {**data, "previous_version": result.version,
                                          "reshuffled": False, "new_patients": 0}))
            return Manifest(STAGE, key, outputs, data)

        stage = cached_stage(run, stage=STAGE, version=VERSION, config_hash=config_hash,
                             inputs=inputs, compute=compute, logger=logger)
    data = stage.data
    if data["reshuffled"]:
        logger.warning("RESHUFFLED: new split version %s replaces %s; patients may have moved",
                       data["version"][:12], data["previous_version"][:12])
    logger.info("split version %s: %d new patient(s) placed", data["version"][:12],
                data["new_patients"])
    return {"version": data["version"], "reshuffled": bool(data["reshuffled"]),
            "new_patients": int(data["new_patients"]), "stage": stage.to_dict()}


# --- audit -------------------------------------------------------------------------


def read_split_version(layout: DataLayout, prefix: str) -> tuple[str, pd.DataFrame]:
    """The stored split version whose id starts with `prefix` (unique), and its table."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise StageError(f"expected a split version (hex digits), found {prefix!r}")
    found = layout.split_versions(prefix)
    if len(found) != 1:
        known = ", ".join(v[:12] for v in layout.split_versions()) or "none"
        what = "no stored split version" if not found else f"{len(found)} split versions"
        raise StageError(f"{what} start(s) with {prefix!r}; stored versions: {known}")
    table = pq.read_table(layout.split_version(found[0]))
    if not table.schema.remove_metadata().equals(SPLITS):
        raise SchemaError(f"split version {found[0][:12]}: schema is not the splits schema")
    frame = table.to_pandas(types_mapper={pa.int8(): pd.Int8Dtype()}.get)
    return found[0], frame


def _leak_lines(leaks: list[dict[str, Any]]) -> list[str]:
    lines = [f"leak: {row['kind']} {row['key']} in {row['partitions']} "
             f"(patients {row['patient_ids']}; scans {row['scan_ids']})"
             for row in leaks[:SUMMARY_ROWS]]
    if len(leaks) > SUMMARY_ROWS:
        lines.append(f"... {len(leaks) - SUMMARY_ROWS} more leak(s) in the report")
    return lines


def _audit_summary(report: dict[str, Any], md_path: str) -> list[str]:
    version = str(report["split_version"])[:12]
    verdict = "LEAKAGE FOUND" if report["has_leakage"] else "no leakage found"
    lines = [f"split audit of version {version}: {verdict}", *_leak_lines(report["leaks"])]
    if report["warnings"]:
        lines.append(f"{len(report['warnings'])} warning(s), e.g. {report['warnings'][0]}")
    diff = report["diff"]
    if diff is not None:
        lines.append(f"against {str(diff['old_version'])[:12]}: moved {diff['moved_patients']}, "
                     f"new {diff['new_patients']}, disappeared {diff['disappeared_patients']} "
                     "patient(s)")
        lines += [f"moved: {row['patient_id']} {row['old_assignment']} -> "
                  f"{row['new_assignment']}" for row in diff["moved"][:SUMMARY_ROWS]]
    lines.append(f"report: {md_path}")
    return lines


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


@task(name="audit_splits_task", cache_policy=NO_CACHE, persist_result=False)
def audit_splits_task(config: SplitConfig, data_root: Path, against: str | None = None,
                      run_id: str | None = None) -> dict[str, Any]:
    """Audit the current split (leakage, distributions, diff); write the MD/JSON reports."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        layout = run.layout
        for name in ("splits", "scans", "groups"):
            if not table_exists(layout, name):
                raise StageError(f"table {name!r} is missing: run the stage that writes it first")
        earlier = read_split_version(layout, against) if against is not None else None
        inputs = {name: run.memo.hash_file(layout.table(name))
                  for name in ("splits", "scans", "groups")}
        inputs["against"] = (run.memo.hash_file(layout.split_version(earlier[0]))
                             if earlier is not None else "-")

        def compute(key: str) -> Manifest:
            splits = read_table(layout, "splits")
            report = audit_splits(splits, read_table(layout, "scans"),
                                  read_table(layout, "groups"), config,
                                  against=earlier[1] if earlier is not None else None)
            name = f"audit-{report.split_version}"
            if earlier is not None:
                name += f"--against-{earlier[0][:12]}"
            md, js = layout.report(REPORT_STAGE, name + ".md"), layout.report(REPORT_STAGE,
                                                                              name + ".json")
            write_text(md, report.to_markdown())
            write_json(js, report.to_json_dict())
            return Manifest(AUDIT_STAGE, key, {"markdown": artifact(layout, md, run.memo),
                                               "json": artifact(layout, js, run.memo)},
                            {"has_leakage": report.has_leakage})

        stage = cached_stage(run, stage=AUDIT_STAGE, version=VERSION,
                             config_hash=config.fingerprint(), inputs=inputs, compute=compute,
                             logger=logger)
    md_rel, json_rel = stage.outputs["markdown"]["path"], stage.outputs["json"]["path"]
    markdown = layout.resolve(md_rel).read_text()
    report = json.loads(layout.resolve(json_rel).read_text())
    _publish(markdown, report)
    summary = _audit_summary(report, md_rel)
    (logger.error if report["has_leakage"] else logger.info)("%s", summary[0])
    return {"has_leakage": bool(report["has_leakage"]), "report": md_rel, "json": json_rel,
            "summary": summary, "leaks": report["leaks"][:SUMMARY_ROWS],
            "stage": stage.to_dict()}
