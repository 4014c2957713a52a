"""The model registry stage: every trained ensemble of a data root, which one is
promoted, and every decision about it.

A model is the fold models of the three branches, the DS weights, the segmenter and the
configs they were made with; its record (`models/ensembles/<model_id>.json`) holds all
of that plus what it was trained and tested on (scan ids with volume hashes, the split
version, the test scans with its DS probabilities), the code version and the Prefect
flow run. `register_model_task` records the current ensemble after evaluation: the
first a data root trains is promoted; later ones meet the champion / challenger gate on
the champion's test scans. `promote` and `rollback` are for people who overrule it.
The rules are `dsan_core.registry`'s, the records `storage.registry`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core import registry
from dsan_core.config import PipelineConfig
from storage import registry as records
from storage.lineage import code_version
from storage.tables import require_tables
from tasks._common.contract import StageRun

PROMOTED, REJECTED = registry.PROMOTED, registry.REJECTED


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
    return registry.model_id(records.read_registry_tables(run.layout), fingerprints)


@task(name="register_model_task", cache_policy=NO_CACHE, persist_result=False)
def register_model_task(data_root: Path, config: PipelineConfig,
                        run_id: str | None = None) -> ModelOutcome:
    """Record the current ensemble; promote it when first, or when the gate says so."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        require_tables(run.layout, "training_runs", "predictions", "splits", "groups")
        layout = run.layout
        tables = records.read_registry_tables(layout)
        model_id = registry.model_id(tables, config.fingerprints())
        models = records.read_models(layout)
        statuses = records.statuses(models)
        if model_id in statuses:
            return ModelOutcome(model_id, statuses[model_id], "", "", new=False)
        record = registry.model_record(
            tables, config, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            code_version=code_version(), pipeline_run=run_id, flow_run_id=_flow_run_id())
        path = records.write_record(layout, record)
        champion_id = registry.champion(statuses)
        if champion_id is None:
            decision = None
            outcome = ModelOutcome(model_id, PROMOTED, "", "the data root's first ensemble",
                                   True)
        else:
            old = records.read_record(layout, champion_id)
            decision = registry.gate(record, old, tables.groups, tables.splits, config.gate)
            outcome = ModelOutcome(model_id, PROMOTED if decision.promote else REJECTED,
                                   champion_id, decision.reason, True,
                                   registry.new_test_summary(record, old, tables.groups))
        after = registry.register(statuses, model_id, promote=outcome.status == PROMOTED)
        records.write_models(layout, models, after,
                             registry.model_row(record, after[model_id], path))
        records.log_decision(layout, model_id, registry.PROMOTE if outcome.status == PROMOTED
                             else registry.REJECT, "gate" if decision else "first model",
                             outcome.champion_id, outcome.reason,
                             decision.numbers() if decision else {},
                             decision.n_scans if decision else 0)
    logger.info("%s", outcome.summary()[0])
    return outcome


def promote(run: StageRun, model_id: str, reason: str,
            action: str = registry.PROMOTE) -> str:
    """Make `model_id` (or the one model starting with it) the promoted model by hand;
    returns the one it replaced ("" when none)."""
    models = records.read_models(run.layout)
    statuses = records.statuses(models)
    chosen = registry.resolve(statuses, model_id)
    previous = registry.champion(statuses) or ""
    records.write_models(run.layout, models, registry.promote_model(statuses, chosen))
    records.log_decision(run.layout, chosen, action, "user", previous, reason, {}, 0)
    return previous


def rollback(run: StageRun, reason: str) -> tuple[str, str]:
    """Promote the model promoted before the current one; returns (from, to)."""
    statuses = records.statuses(records.read_models(run.layout))
    current, earlier = registry.rollback_target(statuses, records.promotions(run.layout))
    promote(run, earlier, reason, action=registry.ROLLBACK)
    return current, earlier


def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # noqa: BLE001 - outside a flow run there is none to name
        return None
