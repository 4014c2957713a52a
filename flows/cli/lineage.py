"""`dsan lineage`: what produced a model or a report, and how long each stage took."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from flows.cli.app import DataRootOpt, app, call, fail, print_lines, print_stage_times
from flows.runtime import resolve_data_root


@app.command(rich_help_panel="Inspect")
def lineage(
    target: Annotated[str | None, typer.Argument(
        help="a model id (or unique prefix), or a report's path; none: the last run")] = None,
    last: Annotated[bool, typer.Option("--last", help="the last run's stages and wall time "
                                                      "(the default)")] = False,
    every_scan: Annotated[bool, typer.Option("--all", help="list every scan")] = False,
    data_root: DataRootOpt = None,
) -> None:
    """What produced a model or report (scans, split, segmenter, configs, code, flow runs),
    or the last run's stages with their wall time."""
    from storage.layout import DataLayout
    from storage.lineage import last_run_id

    root = resolve_data_root(data_root)
    layout = DataLayout(root)
    if target is None or last:
        run_id = last_run_id(layout)
        if run_id is None:
            fail(RuntimeError("no stage has run on this data root yet"))
            return
        print_stage_times(root, run_id)
        return
    record = call(_model_record, layout, target)
    print_lines(_describe(record, every_scan))


def _model_record(layout: Any, target: str) -> dict[str, Any]:
    """The record of the model `target` names, directly or through a report."""
    from dsan_core.errors import StageError
    from storage.tables import read_table, table_exists

    if not table_exists(layout, "models"):
        raise StageError("no model registered yet: run dsan run")
    ids = read_table(layout, "models")["model_id"].tolist()
    if target.endswith((".md", ".html", ".json")) or "/" in target:  # a report
        matches = _models_named_in(layout, target, ids)
    else:
        matches = [m for m in ids if m.startswith(target)]
    if len(matches) != 1:
        raise StageError(f"expected one model id or a report naming one, found {len(matches)} "
                         f"for {target!r}; models: {', '.join(ids)}")
    record: dict[str, Any] = json.loads(layout.model_record(matches[0]).read_text())
    return record


def _models_named_in(layout: Any, target: str, ids: list[str]) -> list[str]:
    from pathlib import Path

    path = Path(target) if Path(target).is_absolute() else layout.root / target
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    return [m for m in ids if m in text]


def _describe(record: dict[str, Any], every_scan: bool) -> list[str]:
    scans = record["scans"]
    by_set: dict[str, int] = {}
    for scan in scans:
        by_set[scan["set"]] = by_set.get(scan["set"], 0) + 1
    lines = [f"model {record['model_id']} (created {record['created_at']})",
             f"code version: {record['code_version']}",
             f"Prefect flow run: {record.get('flow_run_id') or 'n/a'}; dsan run "
             f"{record.get('pipeline_run') or 'n/a'}",
             f"split version: {record['split_version']}",
             "scans: " + ", ".join(f"{n} {s}" for s, n in sorted(by_set.items())),
             f"segmenter: {record['segmenter']['method']} "
             f"{', '.join(record['segmenter']['version'])}",
             f"DS weights: extreme {record['weights']['w_extreme']}, middle "
             f"{record['weights']['w_middle']}",
             "configs: " + ", ".join(f"{k} {v}" for k, v in
                                     sorted(record["fingerprints"].items()))]
    lines += [f"checkpoint fold {c['fold']} {c['branch']}: {c['path']} sha256 {c['sha256']}"
              for c in sorted(record["checkpoints"], key=lambda c: (c["fold"], c["branch"]))]
    shown = scans if every_scan else scans[:10]
    lines += [f"scan {s['scan_id']} {s['set']}"
              + (f" fold {s['fold']}" if s["fold"] is not None else "")
              + f" volume sha256 {s['volume_hash']}" for s in shown]
    if len(shown) < len(scans):
        lines.append(f"... {len(scans) - len(shown)} more scans (--all lists them)")
    return lines
