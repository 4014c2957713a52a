"""What the evaluation report states about its sources, read from the data root: the
provenance (scans, split version, checkpoints, configs, code), the ensemble search, its
nested per-fold weights and the final (shipped) weights."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dsan_core.ensemble import EnsembleSearch, EnsembleWeights, NestedFold
from dsan_core.evaluation.report import ReportProvenance
from storage.tables import read_table, table_exists
from tasks.contract import StageRun


def provenance(run: StageRun, fingerprints: Mapping[str, str], profile: str,
               code: str, model_id: str = "") -> ReportProvenance:
    """Scan counts per set, the split version, every checkpoint's hash, the config
    fingerprints and the code version the numbers come from."""
    splits = read_table(run.layout, "splits")
    runs = read_table(run.layout, "training_runs")
    version = str(splits["split_version"].iloc[0]) if len(splits) else "-"
    counts = {str(name): int(n) for name, n in splits["set"].value_counts().sort_index().items()}
    checkpoints = {f"fold {r.fold} {r.branch} ({r.model_key})": str(r.checkpoint_hash)
                   for r in runs.itertuples(index=False)}
    return ReportProvenance(profile, version, counts, checkpoints, dict(fingerprints), code,
                            model_id)


def ensemble_search(run: StageRun) -> EnsembleSearch | None:
    """The ensemble stage's search, rebuilt from its weights and surface (None when the
    weights were configured, not searched)."""
    weights = run.layout.report("ensemble", "weights.json")
    if not weights.exists() or not table_exists(run.layout, "ensemble_surface"):
        return None
    record = json.loads(weights.read_text())
    if not record.get("searched"):
        return None
    return EnsembleSearch(EnsembleWeights(record["w_extreme"], record["w_middle"]),
                          record["objective"], record["value"], record["paper_value"],
                          read_table(run.layout, "ensemble_surface"), record["tv_scans"])


def _weights_record(run: StageRun) -> dict[str, Any] | None:
    path = run.layout.report("ensemble", "weights.json")
    if not path.exists():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def ensemble_weights(run: StageRun) -> EnsembleWeights | None:
    """The DS weights of the shipped model (searched on all TV, or configured)."""
    record = _weights_record(run)
    if record is None:
        return None
    return EnsembleWeights(float(record["w_extreme"]), float(record["w_middle"]))


def nested_folds(run: StageRun) -> tuple[NestedFold, ...]:
    """The ensemble stage's nested per-fold weights (empty before it recorded them)."""
    record = _weights_record(run) or {}
    return tuple(NestedFold(int(f["fold"]), EnsembleWeights(float(f["w_extreme"]),
                                                            float(f["w_middle"])),
                            float("nan") if f["value"] is None else float(f["value"]),
                            int(f["searched_scans"]), int(f["scored_scans"]))
                 for f in record.get("nested", []))
