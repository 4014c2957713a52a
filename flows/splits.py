"""The splits flows: patient-level split (cached, versioned) and the split audit."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import SplitConfig
from tasks.splits import (
    AUDIT_STAGE,
    STAGE,
    AuditOutcome,
    SplitOutcome,
    audit_splits_task,
    split_task,
)


@flow(name=STAGE, validate_parameters=False)
def split_flow(config: SplitConfig, data_root: Path, *, reshuffle: bool = False,
               run_id: str | None = None) -> SplitOutcome:
    return split_task(config, data_root, reshuffle, run_id)


@flow(name=AUDIT_STAGE, validate_parameters=False)
def audit_splits_flow(config: SplitConfig, data_root: Path, *, against: str | None = None,
                      run_id: str | None = None) -> AuditOutcome:
    """Returns has_leakage instead of raising, so the reports are always written."""
    return audit_splits_task(config, data_root, against, run_id)
