"""The splits flows: patient-level split (cached, versioned) and the split audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from dsan_core.config import SplitConfig
from tasks.splits import audit_splits_task, split_task


def format_split_summary(result: dict[str, Any]) -> list[str]:
    """Short human lines about a split task's result."""
    data = result["stage"]["data"]
    version, previous = data["version"][:12], str(data["previous_version"])[:12]
    if result["reshuffled"]:
        head = f"RESHUFFLED: new split version {version} (was {previous}); patients may move"
    elif data["previous_version"] in ("-", data["version"]):
        head = f"split version {version}"
    else:
        head = f"split version {version} (extends {previous}; nobody moved)"
    source = "from cache" if data.get("cache_hit") else "computed"
    parts = ", ".join(f"{name} {scans} scans / {patients} patients"
                      for name, (scans, patients) in data["partitions"].items())
    return [f"{head} ({source})",
            f"{data['scans']} scans; {result['new_patients']} new patient(s) placed",
            parts]


@flow(name="split", validate_parameters=False)
def split_flow(config: SplitConfig, data_root: Path, *, reshuffle: bool = False,
               run_id: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = split_task(config, data_root, reshuffle, run_id)
    return {**result, "summary": format_split_summary(result)}


@flow(name="audit-splits", validate_parameters=False)
def audit_splits_flow(config: SplitConfig, data_root: Path, *, against: str | None = None,
                      run_id: str | None = None) -> dict[str, Any]:
    """Returns has_leakage instead of raising, so the reports are always written."""
    result: dict[str, Any] = audit_splits_task(config, data_root, against, run_id)
    return result
