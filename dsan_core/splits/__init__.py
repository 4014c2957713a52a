"""Patient-level TV/test split and stratified group k-fold inside TV (METHOD.md "Data
and labels"), and the split audit (`dsan_core.splits.audit`).

Inputs are pandas tables whose ids are already pseudonymous strings:

- scans: scan_id, patient_id, label ("COVID" | "CAP") and, per policy,
  acquisition_date ("date"), site ("site"), the assignment column ("column").
- groups: scan_id, analysis_bin (the infection-ratio bin of `dsan_core.groups`).

Output (`SplitResult.table`), one row per scan, sorted by scan_id:
scan_id, patient_id, set ("tv" | "test"), fold (Int8, null for test), policy, seed,
split_version. `split_version` is the sha256 of the sorted "scan_id<TAB>set<TAB>fold"
lines, so the same assignment always has the same version.

Every assignment is per patient: all scans of a patient share set and fold. Folds are
stratified by label x analysis bin (each patient counts in its dominant stratum) and
seeded per patient by a keyed hash of its id, so the result does not depend on row order.
Given a `previous` table, known patients keep their set and fold; only new patients
are placed, greedily, in the fold that has fewest patients of their stratum.

Modules: `policies` (who is in test), `cohort` (scans coded per patient), `folds`,
`assignment` (`make_splits`, the version), `partitions` (fold/test names and counts),
`ids` (exact uint64 keys of string ids, for millions of rows), `audit/`.
"""

from __future__ import annotations

from dsan_core.splits.assignment import SplitResult, make_splits, split_version, unseen_patients
from dsan_core.splits.folds import stratified_group_folds
from dsan_core.splits.partitions import (
    FoldScans,
    fold_scans,
    partition_codes,
    partition_counts,
    partition_names,
)
from dsan_core.splits.policies import assign_test_set, patient_keys
from dsan_core.splits.schema import LABEL_SPLIT_COLUMN, SPLIT_COLUMNS, TEST, TV, require_columns

__all__ = [
    "LABEL_SPLIT_COLUMN",
    "SPLIT_COLUMNS",
    "TEST",
    "TV",
    "FoldScans",
    "SplitResult",
    "assign_test_set",
    "fold_scans",
    "make_splits",
    "partition_codes",
    "partition_counts",
    "partition_names",
    "patient_keys",
    "require_columns",
    "split_version",
    "stratified_group_folds",
    "unseen_patients",
]
