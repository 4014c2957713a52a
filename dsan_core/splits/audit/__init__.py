"""The split audit: leakage (`leaks`), distributions per partition and SS weights
(`tables`), the diff against an earlier version (`diff`), the report (`report`) and
its Markdown/JSON rendering (`render`)."""

from __future__ import annotations

from dsan_core.splits.audit.diff import SplitDiff, diff_splits
from dsan_core.splits.audit.render import audit_summary_lines
from dsan_core.splits.audit.report import AuditReport, audit_splits

__all__ = ["AuditReport", "SplitDiff", "audit_splits", "audit_summary_lines", "diff_splits"]
