"""The model registry's rules: a trained ensemble's id and record, the champion /
challenger gate's inputs, and the life of a model (its status). Pure: mappings and
DataFrames in and out; `storage.registry` keeps the records and tables and
`tasks.models` wires the two.

A model's status moves only along these transitions:

    status      a model that is                      may become
    candidate   registered, not decided yet          promoted (the first model; the gate
                                                     passed), rejected (the gate failed)
    promoted    the one `dsan predict` uses;         retired (another one is promoted)
                at most one at a time
    retired     promoted once, then replaced         promoted (by hand, or a rollback)
    rejected    turned down by the gate              promoted (by hand)

Every decision is one of `ACTIONS` (the `model_decisions` table): promote, reject,
rollback. A rollback promotes again the model promoted most recently before the current
champion (by a promote or rollback decision).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dsan_core.branches import ATT_DS
from dsan_core.config import GateConfig, PipelineConfig
from dsan_core.errors import RegistryError
from dsan_core.evaluation.champion import GateDecision, compare_with_champion
from dsan_core.evaluation.metrics import scan_auc
from dsan_core.groups import LABEL_COVID, LABELS

PROMOTED, CANDIDATE, REJECTED, RETIRED = "promoted", "candidate", "rejected", "retired"
STATUSES: tuple[str, ...] = (CANDIDATE, PROMOTED, RETIRED, REJECTED)
TRANSITIONS: dict[str, frozenset[str]] = {
    CANDIDATE: frozenset({PROMOTED, REJECTED}),
    PROMOTED: frozenset({RETIRED}),
    RETIRED: frozenset({PROMOTED}),
    REJECTED: frozenset({PROMOTED}),
}
PROMOTE, REJECT, ROLLBACK = "promote", "reject", "rollback"
ACTIONS: tuple[str, ...] = (PROMOTE, REJECT, ROLLBACK)
#: The config sections whose fingerprints are part of a model's id.
ID_CONFIGS: tuple[str, ...] = ("preprocess", "groups", "train")
#: Model ids are this many hex digits of a sha256.
ID_LENGTH = 16


# --- what a model is ---------------------------------------------------------------------

@dataclass(frozen=True)
class RegistryTables:
    """What a data root says about its current ensemble (`storage.registry` reads it).

    runs: `training_runs`; weights: the ensemble stage's weights record; infection: the
    `infection` table; predict_segmenter: the card of the segmenter `dsan predict` uses
    for studies without masks ({} before the segmentation evaluation wrote one);
    splits, scans, predictions, groups: those tables; thresholds: the evaluation's
    `thresholds` table (None before it ran).
    """

    runs: pd.DataFrame
    weights: Mapping[str, Any]
    infection: pd.DataFrame
    predict_segmenter: Mapping[str, Any]
    splits: pd.DataFrame
    scans: pd.DataFrame
    predictions: pd.DataFrame
    groups: pd.DataFrame
    thresholds: pd.DataFrame | None


def model_id(tables: RegistryTables, fingerprints: Mapping[str, str]) -> str:
    """The id of the ensemble `tables` describe: a hash of its checkpoints, DS weights,
    segmenter (and the one `dsan predict` uses without masks) and model-changing
    configs. Unchanged for the same ensemble, so registering it twice is a no-op."""
    payload: dict[str, Any] = {
        "checkpoints": sorted(str(h) for h in tables.runs["checkpoint_hash"]),
        "weights": [tables.weights["w_extreme"], tables.weights["w_middle"]],
        "segmenter": _segmenter_versions(tables.infection),
        "configs": {k: fingerprints.get(k, "") for k in ID_CONFIGS},
    }
    card = tables.predict_segmenter
    if card:  # a retrained predict-time VB-Net makes a new model (for the record)
        payload["predict_segmenter"] = [card["tag"], card.get("infection_threshold")]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def _segmenter_versions(infection: pd.DataFrame) -> list[str]:
    return sorted(set(infection["model_version"].astype(str)))


def ensemble_test_probabilities(predictions: pd.DataFrame) -> pd.Series:
    """The DS ensemble's P(COVID) per test scan: the mean over its fold models."""
    test = predictions[(predictions["branch"] == ATT_DS) & (predictions["set"] == "test")]
    return test.groupby("scan_id")["probability"].mean()


def decision_threshold(thresholds: pd.DataFrame | None, configured: float) -> dict[str, Any]:
    """The P(COVID) at which `dsan predict` calls COVID: the one the evaluation chose for
    the DS ensemble on all of TV (its `thresholds` row with fold null), so that predict
    decides as the report's test rows were scored; `configured` (rule 'fixed') before
    an evaluation chose one."""
    if thresholds is not None:
        chosen = thresholds[(thresholds["model"] == ATT_DS) & thresholds["fold"].isna()]
        if len(chosen):
            row = chosen.iloc[0]
            return {"threshold": float(row["threshold"]), "rule": str(row["rule"]),
                    "n_scans": int(row["n_scans"])}
    return {"threshold": configured, "rule": "fixed", "n_scans": 0}


def model_record(tables: RegistryTables, config: PipelineConfig, *, created_at: str,
                 code_version: str, pipeline_run: str | None,
                 flow_run_id: str | None) -> dict[str, Any]:
    """The record of the current ensemble (`models/ensembles/<model_id>.json`): what it
    is made of, what it was trained and tested on, and where it came from. Names no raw
    path (checkpoints are relative to the data root; external masks are left out)."""
    splits, scans = tables.splits, tables.scans.set_index("scan_id")
    test = ensemble_test_probabilities(tables.predictions)
    thresholds = tables.infection["infection_threshold"].dropna()
    return {
        "model_id": model_id(tables, config.fingerprints()),
        "created_at": created_at,
        "checkpoints": [{"fold": int(r["fold"]), "branch": str(r["branch"]),
                         "path": r["checkpoint_path"], "sha256": r["checkpoint_hash"],
                         "model_key": r["model_key"]}
                        for r in tables.runs.to_dict("records")],
        "weights": {"w_extreme": tables.weights["w_extreme"],
                    "w_middle": tables.weights["w_middle"]},
        "segmenter": {"method": config.segmentation.method,
                      "version": _segmenter_versions(tables.infection),
                      "infection_threshold": None if thresholds.empty
                      else float(thresholds.iloc[0]),
                      # For studies without masks (the segmentation evaluation's card).
                      "predict": dict(tables.predict_segmenter) or None},
        "configs": {**{name: getattr(config, name).model_dump(mode="json")
                       for name in ("preprocess", "groups", "train", "ensemble")},
                    "segmentation": config.segmentation.model_dump(
                        mode="json", exclude={"external_mask_dir"})},
        "fingerprints": config.fingerprints(),
        "split_version": str(splits["split_version"].iloc[0]),
        "scans": [{"scan_id": s, "set": st, "fold": None if pd.isna(f) else int(f),
                   "volume_hash": str(scans.loc[s, "volume_hash"])}
                  for s, st, f in zip(splits["scan_id"], splits["set"], splits["fold"],
                                      strict=True)],
        "decision": decision_threshold(tables.thresholds, config.evaluation.threshold),
        "test_predictions": {str(s): float(p) for s, p in test.items()},
        "test_auc": scan_auc(test, _labels(tables.groups)),
        "code_version": code_version,
        "pipeline_run": pipeline_run,
        "flow_run_id": flow_run_id,
    }


def model_row(record: Mapping[str, Any], status: str, record_path: str) -> dict[str, Any]:
    """The `models` table's row of a record."""
    return {"model_id": record["model_id"], "created_at": pd.Timestamp(record["created_at"]),
            "status": status, "split_version": record["split_version"],
            "n_tv": sum(s["set"] == "tv" for s in record["scans"]),
            "n_test": sum(s["set"] == "test" for s in record["scans"]),
            "test_auc": record["test_auc"], "w_extreme": record["weights"]["w_extreme"],
            "w_middle": record["weights"]["w_middle"],
            "segmenter": ",".join(record["segmenter"]["version"]),
            "code_version": record["code_version"], "record_path": record_path}


def _labels(groups: pd.DataFrame) -> pd.Series:
    return groups.set_index("scan_id")["label"]


# --- the gate ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GateInputs:
    """Both models' P(COVID) on the same scans, in one order, with their labels (1 =
    COVID) and patients: the scans the champion was tested on that the challenger
    also predicted."""

    scan_ids: tuple[str, ...]
    y: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    patient_ids: np.ndarray


def gate_inputs(challenger: Mapping[str, Any], champion: Mapping[str, Any],
                groups: pd.DataFrame, splits: pd.DataFrame) -> GateInputs:
    """Align two records' test predictions on the champion's test scans. Refused
    (RegistryError) when they share no scan, or a shared scan has no label or patient."""
    old, new = champion["test_predictions"], challenger["test_predictions"]
    shared = sorted(set(old) & set(new))
    if not shared:
        raise RegistryError(f"model {challenger['model_id']} has no prediction on the test "
                            f"scans of the promoted model {champion['model_id']}: they "
                            "cannot be compared (the split or the test set was replaced?)")
    labels = _labels(groups)
    patients = splits.set_index("scan_id")["patient_id"]
    unknown = [s for s in shared if s not in labels.index or s not in patients.index
               or labels.loc[s] not in LABELS]
    if unknown:
        raise RegistryError(f"expected a label ({' or '.join(LABELS)}) and a patient for "
                            f"each of the {len(shared)} shared test scans, found none for "
                            f"{len(unknown)} (first: scan {unknown[0]})")
    return GateInputs(tuple(shared),
                      (labels.loc[shared] == LABEL_COVID).to_numpy(dtype=np.int64),
                      np.array([new[s] for s in shared], dtype=np.float64),
                      np.array([old[s] for s in shared], dtype=np.float64),
                      patients.loc[shared].to_numpy())


def gate(challenger: Mapping[str, Any], champion: Mapping[str, Any], groups: pd.DataFrame,
         splits: pd.DataFrame, config: GateConfig) -> GateDecision:
    """The champion / challenger decision on the champion's own test scans
    (`dsan_core.evaluation.champion`)."""
    inputs = gate_inputs(challenger, champion, groups, splits)
    return compare_with_champion(inputs.y, inputs.challenger, inputs.champion,
                                 inputs.patient_ids, config)


def new_test_summary(challenger: Mapping[str, Any], champion: Mapping[str, Any],
                     groups: pd.DataFrame) -> str:
    """The challenger on the test scans its champion never saw (reported apart from the
    gate, which compares on the champion's test scans); "" when there are none."""
    ours = challenger["test_predictions"]
    fresh = sorted(set(ours) - set(champion["test_predictions"]))
    if not fresh:
        return ""
    auc = scan_auc(pd.Series({s: ours[s] for s in fresh}), _labels(groups))
    return f"new test scans (not in the champion's test set): {len(fresh)}, AUC {auc:.3f}"


# --- the life of a model -----------------------------------------------------------------

def champion(statuses: Mapping[str, str]) -> str | None:
    """The promoted model (None before the first)."""
    promoted = sorted(m for m, status in statuses.items() if status == PROMOTED)
    if len(promoted) > 1:
        raise RegistryError(f"expected at most one promoted model, found {len(promoted)}: "
                            f"{', '.join(promoted)}")
    return promoted[0] if promoted else None


def _move(statuses: dict[str, str], model: str, status: str) -> None:
    now = statuses[model]
    if status not in TRANSITIONS.get(now, frozenset()):
        raise RegistryError(f"model {model} is {now}: it cannot become {status} (allowed: "
                            f"{', '.join(sorted(TRANSITIONS.get(now, ()))) or 'none'})")
    statuses[model] = status


def register(statuses: Mapping[str, str], model: str, *, promote: bool) -> dict[str, str]:
    """The statuses after registering a new model: promoted (retiring the champion) or
    rejected."""
    if model in statuses:
        raise RegistryError(f"model {model} is registered already ({statuses[model]})")
    after = {**statuses, model: CANDIDATE}
    if promote:
        return promote_model(after, model)
    _move(after, model, REJECTED)
    return after


def promote_model(statuses: Mapping[str, str], model: str) -> dict[str, str]:
    """The statuses after promoting a known model: the champion it replaces is retired."""
    if model not in statuses:
        raise RegistryError(f"no model {model!r} in this data root (see dsan models)")
    after = dict(statuses)
    current = champion(after)
    if current == model:
        return after
    if current is not None:
        _move(after, current, RETIRED)
    _move(after, model, PROMOTED)
    return after


def resolve(known: Iterable[str], prefix: str) -> str:
    """The one known model id that starts with `prefix`."""
    ids = sorted(set(known))
    matches = [m for m in ids if m.startswith(prefix)]
    if len(matches) != 1:
        raise RegistryError(f"expected one model starting with {prefix!r}, found "
                            f"{len(matches)}; known: {', '.join(ids) or 'none'}")
    return matches[0]


def rollback_target(statuses: Mapping[str, str], promotions: Sequence[str]) -> tuple[str, str]:
    """(the champion, the model a rollback promotes again): the model promoted most
    recently other than the champion. `promotions`: the model ids of every promote and
    rollback decision, oldest first."""
    now = champion(statuses)
    earlier = [m for m in reversed(promotions) if m != now and m in statuses]
    if now is None or not earlier:
        raise RegistryError("nothing to roll back to: no model was promoted before the "
                            "current one")
    return now, earlier[0]
