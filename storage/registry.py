"""The model registry's records: `models/ensembles/<model_id>.json` (one per trained
ensemble), the `models` table (one row per model, with its status) and the
`model_decisions` table (append-only: every promote, reject and rollback). The rules
(ids, the gate, which status may follow which) are `dsan_core.registry`'s."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dsan_core.errors import RegistryError, StageError
from dsan_core.registry import PROMOTE, ROLLBACK, RegistryTables, champion
from storage.atomic import write_json
from storage.layout import DataLayout
from storage.schemas import MODEL_DECISIONS, MODELS
from storage.tables import read_table, table_exists, write_table


def read_json_record(path: Path) -> dict[str, Any] | None:
    """A JSON record file (None when it is not there)."""
    if not path.exists():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def read_ensemble_weights(layout: DataLayout) -> dict[str, Any] | None:
    """The ensemble stage's weights record (None before it ran)."""
    return read_json_record(layout.ensemble_weights())


def read_predict_segmenter(layout: DataLayout) -> dict[str, Any]:
    """The card of the segmenter `dsan predict` uses for studies without masks, as the
    segmentation evaluation wrote it ({} before it ran)."""
    return read_json_record(layout.predict_segmenter()) or {}


def read_registry_tables(layout: DataLayout) -> RegistryTables:
    """What the data root says about its current ensemble."""
    weights = read_ensemble_weights(layout)
    if weights is None:
        raise RegistryError("no ensemble weights in this data root: run the ensemble stage "
                            "(dsan run) first")
    return RegistryTables(
        runs=read_table(layout, "training_runs"), weights=weights,
        infection=read_table(layout, "infection"),
        predict_segmenter=read_predict_segmenter(layout),
        splits=read_table(layout, "splits"), scans=read_table(layout, "scans"),
        predictions=read_table(layout, "predictions"), groups=read_table(layout, "groups"),
        thresholds=(read_table(layout, "thresholds") if table_exists(layout, "thresholds")
                    else None))


def read_models(layout: DataLayout) -> pd.DataFrame:
    """The `models` table (no rows before the first registration)."""
    if table_exists(layout, "models"):
        return read_table(layout, "models")
    return pd.DataFrame(columns=MODELS.names)


def statuses(models: pd.DataFrame) -> dict[str, str]:
    """Model id -> status, in the table's order."""
    return {str(m): str(s) for m, s in zip(models["model_id"], models["status"], strict=True)}


def write_models(layout: DataLayout, models: pd.DataFrame, new_statuses: Mapping[str, str],
                 new_row: Mapping[str, Any] | None = None) -> None:
    """The `models` table with every status set from `new_statuses` (and `new_row`
    added)."""
    if new_row is not None:
        models = pd.concat([models, pd.DataFrame([dict(new_row)])], ignore_index=True)
    models = models.assign(status=models["model_id"].map(dict(new_statuses)))
    write_table(layout, "models", models[MODELS.names])


def read_decisions(layout: DataLayout) -> pd.DataFrame:
    """The `model_decisions` table, oldest first (no rows before the first)."""
    if table_exists(layout, "model_decisions"):
        return read_table(layout, "model_decisions")
    return pd.DataFrame(columns=MODEL_DECISIONS.names)


def promotions(layout: DataLayout) -> list[str]:
    """The model ids of every promote and rollback decision, oldest first."""
    decisions = read_decisions(layout)
    return [str(m) for m, action in zip(decisions["model_id"], decisions["action"], strict=True)
            if action in (PROMOTE, ROLLBACK)]


def log_decision(layout: DataLayout, model_id: str, action: str, actor: str, champion_id: str,
                 reason: str, numbers: Mapping[str, Any], n_scans: int) -> None:
    """Append a row to `model_decisions`."""
    new = {"at": pd.Timestamp.now(tz="UTC"), "model_id": model_id, "action": action,
           "actor": actor, "champion_id": champion_id, "reason": reason,
           "numbers": json.dumps(dict(numbers), sort_keys=True, default=float),
           "n_scans": n_scans}
    write_table(layout, "model_decisions",
                pd.concat([read_decisions(layout), pd.DataFrame([new])], ignore_index=True))


def write_record(layout: DataLayout, record: Mapping[str, Any]) -> str:
    """Write a model's record; returns its path relative to the data root."""
    path = layout.model_record(str(record["model_id"]))
    write_json(path, dict(record))
    return layout.relative(path)


def read_record(layout: DataLayout, model_id: str) -> dict[str, Any]:
    record = read_json_record(layout.model_record(model_id))
    if record is None:
        raise RegistryError(f"no model {model_id!r} in this data root (see dsan models)")
    return record


def promoted_record(layout: DataLayout) -> dict[str, Any] | None:
    """The promoted model's record (None before the first registration)."""
    current = champion(statuses(read_models(layout)))
    return None if current is None else read_record(layout, current)


def require_promoted(layout: DataLayout) -> dict[str, Any]:
    """The promoted model's record; StageError naming what to run when there is none."""
    record = promoted_record(layout)
    if record is None:
        raise StageError("no trained ensemble in this data root: run dsan run (DICOM to a "
                         "promoted model) first")
    return record

