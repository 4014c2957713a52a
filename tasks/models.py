"""The model registry: every trained ensemble of a data root, which one is promoted, and
every decision about it.

A model is the fold models of the three branches, the DS weights, the segmenter and the
configs they were made with; its record (`models/ensembles/<model_id>.json`) holds all
of that plus what it was trained and tested on (scan ids with volume hashes, the split
version, the test scans with its DS probabilities), the code version and the Prefect
flow run. `register_model_task` records the current ensemble after evaluation: the
first a data root trains is promoted; later ones meet the champion / challenger gate on
the champion's test scans. `promote` and `rollback` are for people who overrule it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.branches import ATT_DS
from dsan_core.config import GateConfig, PipelineConfig
from dsan_core.errors import StageError
from dsan_core.evaluation.champion import GateDecision, compare_with_champion
from dsan_core.evaluation.metrics import binary_metrics
from dsan_core.groups import LABEL_COVID
from storage.atomic import write_json
from storage.hashing import hash_json
from storage.lineage import code_version
from storage.schemas import MODEL_DECISIONS, MODELS
from storage.tables import read_table, table_exists, write_table
from tasks.contract import StageRun, require_tables
from tasks.segmentation_eval import PREDICT_SEGMENTER

PROMOTED, CANDIDATE, REJECTED, RETIRED = "promoted", "candidate", "rejected", "retired"


@dataclass(frozen=True)
class ModelOutcome:
    model_id: str
    status: str
    champion_id: str  # "" when there was none
    reason: str
    new: bool  # False: this ensemble was registered before
    new_test: str = ""  # the new model on test scans its champion never saw

    def summary(self) -> list[str]:
        if not self.new:
            return [f"model {self.model_id}: {self.status} (registered before)"]
        against = f" against {self.champion_id}" if self.champion_id else ""
        lines = [f"model {self.model_id}: {self.status}{against}: {self.reason}"]
        return lines + ([self.new_test] if self.new_test else [])


def current_model_id(run: StageRun, fingerprints: dict[str, str]) -> str:
    """The id of the ensemble the data root's tables describe now."""
    runs = read_table(run.layout, "training_runs")
    weights = json.loads(run.layout.report("ensemble", "weights.json").read_text())
    infection = read_table(run.layout, "infection")
    payload = {
        "checkpoints": sorted(runs["checkpoint_hash"]),
        "weights": [weights["w_extreme"], weights["w_middle"]],
        "segmenter": sorted(set(infection["model_version"].astype(str))),
        "configs": {k: fingerprints.get(k, "") for k in ("preprocess", "groups", "train")},
    }
    card = predict_segmenter(run)
    if card:  # a retrained predict-time VB-Net makes a new model (for the record)
        payload["predict_segmenter"] = [card["tag"], card.get("infection_threshold")]
    return hash_json(payload)[:16]


def predict_segmenter(run: StageRun) -> dict[str, Any]:
    """The card of the segmenter `dsan predict` uses for studies without masks, as the
    segmentation evaluation wrote it ({} before it ran)."""
    path = run.layout.report("segmentation", PREDICT_SEGMENTER)
    if not path.exists():
        return {}
    card: dict[str, Any] = json.loads(path.read_text())
    return card


@task(name="register_model_task", cache_policy=NO_CACHE, persist_result=False)
def register_model_task(data_root: Path, config: PipelineConfig,
                        run_id: str | None = None) -> ModelOutcome:
    """Record the current ensemble; promote it when first, or when the gate says so."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        require_tables(run.layout, "training_runs", "predictions", "splits", "groups")
        model_id = current_model_id(run, config.fingerprints())
        models = _models(run)
        if model_id in set(models["model_id"]):
            status = str(models.set_index("model_id").loc[model_id, "status"])
            return ModelOutcome(model_id, status, "", "", new=False)
        record = _record(run, model_id, config, run_id)
        write_json(run.layout.model_record(model_id), record)
        champion = models[models["status"] == PROMOTED]
        if champion.empty:
            outcome = ModelOutcome(model_id, PROMOTED, "", "the data root's first ensemble", True)
            _decide(run, models, record, outcome, "first model", None)
        else:
            champion_id = str(champion["model_id"].iloc[0])
            old = _read_record(run, champion_id)
            decision = gate(run, record, old, config.gate)
            outcome = ModelOutcome(model_id, PROMOTED if decision.promote else REJECTED,
                                   champion_id, decision.reason, True,
                                   _new_test_line(run, record, old))
            _decide(run, models, record, outcome, "gate", decision)
    logger.info("%s", outcome.summary()[0])
    return outcome


def gate(run: StageRun, challenger: dict[str, Any], champion: dict[str, Any],
         config: GateConfig) -> GateDecision:
    """The champion / challenger comparison on the champion's test scans."""
    old = champion["test_predictions"]
    new = challenger["test_predictions"]
    shared = sorted(set(old) & set(new))
    if not shared:
        raise StageError(f"model {challenger['model_id']} has no prediction on the test scans "
                         f"of the promoted model {champion['model_id']}: they cannot be "
                         "compared (the split or the test set was replaced?)")
    groups = read_table(run.layout, "groups").set_index("scan_id")
    splits = read_table(run.layout, "splits").set_index("scan_id")
    y = (groups.loc[shared, "label"] == LABEL_COVID).to_numpy(dtype=np.int64)
    return compare_with_champion(y, [new[s] for s in shared], [old[s] for s in shared],
                                 splits.loc[shared, "patient_id"].to_numpy(), config)


def _new_test_line(run: StageRun, record: dict[str, Any], champion: dict[str, Any]) -> str:
    """The new model on the test scans that arrived after its champion, reported apart
    from the gate (which compares on the champion's own test scans)."""
    fresh = sorted(set(record["test_predictions"]) - set(champion["test_predictions"]))
    if not fresh:
        return ""
    probabilities = pd.Series({s: record["test_predictions"][s] for s in fresh})
    return (f"new test scans (not in the champion's test set): {len(fresh)}, AUC "
            f"{_test_auc(run, probabilities):.3f}")


def _record(run: StageRun, model_id: str, config: PipelineConfig,
            run_id: str | None) -> dict[str, Any]:
    layout = run.layout
    runs = read_table(layout, "training_runs")
    splits = read_table(layout, "splits")
    scans = read_table(layout, "scans").set_index("scan_id")
    predictions = read_table(layout, "predictions")
    test = predictions[(predictions["branch"] == ATT_DS) & (predictions["set"] == "test")]
    test_p = test.groupby("scan_id")["probability"].mean()
    infection = read_table(layout, "infection")
    weights = json.loads(layout.report("ensemble", "weights.json").read_text())
    return {
        "model_id": model_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoints": [{"fold": int(r.fold), "branch": str(r.branch), "path": r.checkpoint_path,
                         "sha256": r.checkpoint_hash, "model_key": r.model_key}
                        for r in runs.itertuples(index=False)],
        "weights": {"w_extreme": weights["w_extreme"], "w_middle": weights["w_middle"]},
        "segmenter": {"method": config.segmentation.method,
                      "version": sorted(set(infection["model_version"].astype(str))),
                      "infection_threshold": _threshold(infection),
                      # For studies without masks (tasks.segmentation_eval's card).
                      "predict": predict_segmenter(run) or None},
        "configs": {**{name: getattr(config, name).model_dump(mode="json")
                       for name in ("preprocess", "groups", "train", "ensemble")},
                    # Without the path of external masks: a record names no raw path.
                    "segmentation": config.segmentation.model_dump(
                        mode="json", exclude={"external_mask_dir"})},
        "fingerprints": config.fingerprints(),
        "split_version": str(splits["split_version"].iloc[0]),
        "scans": [{"scan_id": s, "set": st, "fold": None if pd.isna(f) else int(f),
                   "volume_hash": str(scans.loc[s, "volume_hash"])}
                  for s, st, f in zip(splits["scan_id"], splits["set"], splits["fold"],
                                      strict=True)],
        "decision": _decision_threshold(run, config),
        "test_predictions": {str(s): float(p) for s, p in test_p.items()},
        "test_auc": _test_auc(run, test_p),
        "code_version": code_version(),
        "pipeline_run": run_id,
        "flow_run_id": _flow_run_id(),
    }


def _decision_threshold(run: StageRun, config: PipelineConfig) -> dict[str, Any]:
    """The P(COVID) at which `dsan predict` calls COVID: the one the evaluation chose for
    the DS ensemble on all of TV (its `thresholds` row with fold null), so that predict
    decides as the report's test rows were scored; the configured threshold before an
    evaluation wrote one."""
    if table_exists(run.layout, "thresholds"):
        rows = read_table(run.layout, "thresholds")
        chosen = rows[(rows["model"] == ATT_DS) & rows["fold"].isna()]
        if len(chosen):
            row = chosen.iloc[0]
            return {"threshold": float(row["threshold"]), "rule": str(row["rule"]),
                    "n_scans": int(row["n_scans"])}
    return {"threshold": config.evaluation.threshold, "rule": "fixed", "n_scans": 0}


def _threshold(infection: pd.DataFrame) -> float | None:
    values = infection["infection_threshold"].dropna()
    return None if values.empty else float(values.iloc[0])


def _test_auc(run: StageRun, probabilities: pd.Series) -> float:
    if probabilities.empty:
        return float("nan")
    labels = read_table(run.layout, "groups").set_index("scan_id").loc[probabilities.index,
                                                                       "label"]
    return float(binary_metrics((labels == LABEL_COVID).to_numpy(),
                                probabilities.to_numpy())["auc"])


def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # noqa: BLE001 - outside a flow run there is none to name
        return None


def _models(run: StageRun) -> pd.DataFrame:
    if table_exists(run.layout, "models"):
        return read_table(run.layout, "models")
    return pd.DataFrame(columns=MODELS.names)


def _read_record(run: StageRun, model_id: str) -> dict[str, Any]:
    path = run.layout.model_record(model_id)
    if not path.exists():
        raise StageError(f"no model {model_id!r} in this data root (see dsan models)")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _decide(run: StageRun, models: pd.DataFrame, record: dict[str, Any], outcome: ModelOutcome,
            actor: str, decision: GateDecision | None) -> None:
    """Add the model's row (retiring the champion it replaces) and the decision's row."""
    if outcome.status == PROMOTED:
        models.loc[models["status"] == PROMOTED, "status"] = RETIRED
    row = {"model_id": record["model_id"], "created_at": pd.Timestamp(record["created_at"]),
           "status": outcome.status, "split_version": record["split_version"],
           "n_tv": sum(s["set"] == "tv" for s in record["scans"]),
           "n_test": sum(s["set"] == "test" for s in record["scans"]),
           "test_auc": record["test_auc"], "w_extreme": record["weights"]["w_extreme"],
           "w_middle": record["weights"]["w_middle"],
           "segmenter": ",".join(record["segmenter"]["version"]),
           "code_version": record["code_version"],
           "record_path": run.layout.relative(run.layout.model_record(record["model_id"]))}
    write_table(run.layout, "models", pd.concat([models, pd.DataFrame([row])],
                                                ignore_index=True)[MODELS.names])
    log_decision(run, record["model_id"],
                 "promote" if outcome.status == PROMOTED else "reject", actor,
                 outcome.champion_id, outcome.reason,
                 decision.numbers() if decision else {}, decision.n_scans if decision else 0)


def log_decision(run: StageRun, model_id: str, action: str, actor: str, champion_id: str,
                 reason: str, numbers: dict[str, Any], n_scans: int) -> None:
    rows = (read_table(run.layout, "model_decisions")
            if table_exists(run.layout, "model_decisions")
            else pd.DataFrame(columns=MODEL_DECISIONS.names))
    new = {"at": pd.Timestamp.now(tz="UTC"), "model_id": model_id, "action": action,
           "actor": actor, "champion_id": champion_id, "reason": reason,
           "numbers": json.dumps(numbers, sort_keys=True, default=float), "n_scans": n_scans}
    write_table(run.layout, "model_decisions",
                pd.concat([rows, pd.DataFrame([new])], ignore_index=True))


def promote(run: StageRun, model_id: str, reason: str, action: str = "promote") -> str:
    """Make `model_id` the promoted model by hand; returns the one it replaced."""
    models = _models(run)
    known = set(models["model_id"])
    matches = sorted(m for m in known if m.startswith(model_id))
    if len(matches) != 1:
        raise StageError(f"expected one model starting with {model_id!r}, found "
                         f"{len(matches)}; known: {', '.join(sorted(known)) or 'none'}")
    chosen = matches[0]
    previous = models.loc[models["status"] == PROMOTED, "model_id"].tolist()
    models.loc[models["status"] == PROMOTED, "status"] = RETIRED
    models.loc[models["model_id"] == chosen, "status"] = PROMOTED
    write_table(run.layout, "models", models)
    log_decision(run, chosen, action, "user", previous[0] if previous else "", reason, {}, 0)
    return previous[0] if previous else ""


def rollback(run: StageRun, reason: str) -> tuple[str, str]:
    """Promote the model promoted before the current one; returns (from, to)."""
    decisions = (read_table(run.layout, "model_decisions")
                 if table_exists(run.layout, "model_decisions") else pd.DataFrame())
    promoted = [str(m) for m, a in zip(decisions.get("model_id", []),
                                       decisions.get("action", []), strict=True)
                if a in ("promote", "rollback")]
    current = _models(run)
    now = current.loc[current["status"] == PROMOTED, "model_id"].tolist()
    earlier = [m for m in reversed(promoted) if not now or m != now[0]]
    if not now or not earlier:
        raise StageError("nothing to roll back to: no model was promoted before the current one")
    promote(run, earlier[0], reason, action="rollback")
    return now[0], earlier[0]


def promoted_record(run: StageRun) -> dict[str, Any] | None:
    """The promoted model's record (None before the first registration)."""
    models = _models(run)
    promoted = models[models["status"] == PROMOTED]
    if promoted.empty:
        return None
    return _read_record(run, str(promoted["model_id"].iloc[0]))
