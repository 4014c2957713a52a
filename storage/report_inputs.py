"""What the evaluation report states about its sources, read from the data root: the
provenance (scans, split version, checkpoints, configs, code), the ensemble search, its
nested per-fold weights and the final (shipped) weights."""

from __future__ import annotations

from collections.abc import Mapping

from dsan_core.ensemble import EnsembleSearch, EnsembleWeights, NestedFold
from dsan_core.evaluation.report import ReportProvenance
from storage.layout import DataLayout
from storage.registry import read_ensemble_weights
from storage.tables import read_table, table_exists


def provenance(layout: DataLayout, fingerprints: Mapping[str, str], profile: str,
               code: str, model_id: str = "", network: str = "") -> ReportProvenance:
    """Scan counts per set, the split version, every checkpoint's hash, the config
    fingerprints, the code version and the networks (in words) the numbers come from."""
    splits = read_table(layout, "splits")
    runs = read_table(layout, "training_runs")
    version = str(splits["split_version"].iloc[0]) if len(splits) else "-"
    counts = {str(name): int(n) for name, n in splits["set"].value_counts().sort_index().items()}
    checkpoints = {f"fold {r.fold} {r.branch} ({r.model_key})": str(r.checkpoint_hash)
                   for r in runs.itertuples(index=False)}
    return ReportProvenance(profile, version, counts, checkpoints, dict(fingerprints), code,
                            model_id, network)


def ensemble_search(layout: DataLayout) -> EnsembleSearch | None:
    """The ensemble stage's search, rebuilt from its weights and surface (None when the
    weights were configured, not searched)."""
    record = read_ensemble_weights(layout)
    if record is None or not table_exists(layout, "ensemble_surface"):
        return None
    if not record.get("searched"):
        return None
    return EnsembleSearch(EnsembleWeights(record["w_extreme"], record["w_middle"]),
                          record["objective"], record["value"], record["paper_value"],
                          read_table(layout, "ensemble_surface"), record["tv_scans"])


def ensemble_weights(layout: DataLayout) -> EnsembleWeights | None:
    """The DS weights of the shipped model (searched on all TV, or configured)."""
    record = read_ensemble_weights(layout)
    if record is None:
        return None
    return EnsembleWeights(float(record["w_extreme"]), float(record["w_middle"]))


def nested_folds(layout: DataLayout) -> tuple[NestedFold, ...]:
    """The ensemble stage's nested per-fold weights (empty before it recorded them)."""
    record = read_ensemble_weights(layout) or {}
    return tuple(NestedFold(int(f["fold"]), EnsembleWeights(float(f["w_extreme"]),
                                                            float(f["w_middle"])),
                            float("nan") if f["value"] is None else float(f["value"]),
                            int(f["searched_scans"]), int(f["scored_scans"]))
                 for f in record.get("nested", []))
