"""Audit of a split table: leakage, distributions per partition, SS weights, balance, diff.

`audit_splits` takes the `splits` table of `dsan_core.splits.make_splits`, the scans
and groups tables it was made from (see that module) and optionally an earlier
split table to diff against. Optional scans columns (study_id, series_id,
volume_hash, site, manufacturer, age_years, sex, acquisition_date) widen the audit
when present. Partitions are "fold 0" .. "fold k-1" and "test"; the training set of
fold i (for the size-balanced weights) is TV minus fold i.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsan_core.config import SplitConfig
from dsan_core.errors import InputError
from dsan_core.splits.assignment import split_version
from dsan_core.splits.audit.diff import SplitDiff, diff_splits
from dsan_core.splits.audit.leaks import (
    LEAK_KEYS,
    find_leaks,
    find_shared_identities,
    rows_to_describe,
)
from dsan_core.splits.audit.render import json_value, markdown_table, table_records
from dsan_core.splits.audit.tables import (
    balance_table,
    count_table,
    demographics_table,
    overview_table,
    sampler_weight_table,
)
from dsan_core.splits.ids import (
    arrow_strings,
    match_positions,
    rank_ids,
    sorted_positions,
    string_keys,
)
from dsan_core.splits.partitions import partition_codes, partition_names
from dsan_core.splits.schema import require_columns

#: Scans columns the tables read, per split row: coded once per value, or taken as is.
_CATEGORY_COLUMNS = ("label", "site", "manufacturer", "sex")
_VALUE_COLUMNS = ("age_years", "acquisition_date")
_COUNT_TABLES = (("sites", "site"), ("manufacturers", "manufacturer"),
                 ("analysis_bins", "analysis_bin"), ("sampling_groups", "sampling_group"))
#: Rows of long lists (leaks, moved patients) shown in Markdown / kept in JSON.
MARKDOWN_ROWS = 50
JSON_ROWS = 1000


@dataclass
class AuditReport:
    """Result of `audit_splits`; `tables` maps a name to a DataFrame."""

    split_version: str | None
    n_folds: int
    leaks: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    warnings: list[str] = field(default_factory=list)
    diff: SplitDiff | None = None
    #: The version of the table's content; differs from `split_version` (the version the
    #: table claims) when the table was edited after the split stage wrote it.
    content_version: str | None = None

    @property
    def edited(self) -> bool:
        return self.content_version is not None and self.content_version != self.split_version

    @property
    def has_leakage(self) -> bool:
        return not self.leaks.empty

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary; long lists are cut at `JSON_ROWS` rows."""
        counts = self.leaks["kind"].value_counts().to_dict() if self.has_leakage else {}
        out: dict[str, Any] = {
            "split_version": self.split_version,
            "content_version": self.content_version,
            "edited": self.edited,
            "n_folds": self.n_folds,
            "has_leakage": self.has_leakage,
            "leak_counts": json_value(counts),
            "leaks": table_records(self.leaks, JSON_ROWS),
            "leaks_truncated": len(self.leaks) > JSON_ROWS,
            "warnings": list(self.warnings),
            "tables": {name: table_records(t, JSON_ROWS) for name, t in self.tables.items()},
            "diff": None,
        }
        if self.diff is not None:
            out["diff"] = json_value({
                **self.diff.summary(),
                "moved": table_records(self.diff.moved, JSON_ROWS),
                "new": list(self.diff.new_patients[:JSON_ROWS]),
                "disappeared": list(self.diff.disappeared_patients[:JSON_ROWS]),
            })
        return out

    def to_markdown(self) -> str:
        """A readable report: verdict, leaks, warnings, tables, diff."""
        verdict = "LEAKAGE FOUND" if self.has_leakage else "no leakage found"
        version = (f"`{self.content_version}` (EDITED: the table claims `{self.split_version}`)"
                   if self.edited else f"`{self.split_version}`")
        parts = [f"# Split audit\n\nsplit version {version}, {self.n_folds} folds: "
                 f"**{verdict}**\n"]
        parts.append("## Leaks\n\n" + markdown_table(self.leaks, MARKDOWN_ROWS))
        if self.warnings:
            parts.append("## Warnings\n\n" + "\n".join(f"- {w}" for w in self.warnings) + "\n")
        for name, table in self.tables.items():
            parts.append(f"## {name.replace('_', ' ')}\n\n" + markdown_table(table, MARKDOWN_ROWS))
        if self.diff is not None:
            summary = ", ".join(f"{k}: {v}" for k, v in self.diff.summary().items())
            parts.append(f"## Diff against the earlier split\n\n{summary}\n\n"
                         + markdown_table(self.diff.moved, MARKDOWN_ROWS))
        return "\n".join(parts)


def _first_duplicate(ids: pa.Array) -> str | None:
    order = sorted_positions(ids)
    ordered = ids if np.array_equal(order, np.arange(len(order))) else ids.take(pa.array(order))
    if len(ordered) < 2:
        return None
    same = pc.equal(ordered[1:], ordered[:-1]).to_numpy(zero_copy_only=False)
    return str(ordered[int(np.flatnonzero(same)[0])]) if same.any() else None


def _taken(values: pd.Series, rows: npt.NDArray[np.int64]) -> pd.Series:
    taken = values.take(np.maximum(rows, 0)).reset_index(drop=True)
    return taken.mask(pd.Series(rows < 0)) if (rows < 0).any() else taken


def _categorical(values: pd.Series, rows: npt.NDArray[np.int64]) -> pd.Series:
    """`values` at `rows` (-1: missing) as a categorical over the sorted values.

    Same values as `_taken`, but coded once per distinct value, not copied per row.
    """
    codes, uniques = pd.factorize(values, sort=True)
    taken = np.where(rows >= 0, codes[np.maximum(rows, 0)], -1)
    return pd.Series(pd.Categorical.from_codes(taken, categories=uniques))


@dataclass(frozen=True)
class _Joined:
    """Split rows joined to the scans and groups tables (one row per split row).

    `work` holds the columns the tables need (categoricals for the string columns),
    `coded` integer codes of the identity columns (as `factorize_identities`); the
    identity strings stay in `scans`, at `rows`, until a leak needs them (`_identities`).
    """

    work: pd.DataFrame
    coded: dict[str, tuple[npt.NDArray[np.intp], int]]
    rows: npt.NDArray[np.int64]
    warnings: list[str]


def _identity_codes(values: pd.Series, rows: npt.NDArray[np.int64]
                    ) -> tuple[npt.NDArray[np.intp], int]:
    codes, n_keys = rank_ids(values)
    return codes[rows], n_keys


def _patient_differs(splits: pd.DataFrame, scans: pd.DataFrame, rows: npt.NDArray[np.int64]
                     ) -> npt.NDArray[np.bool_]:
    """Per split row: patient id differs from the scans table's (or either is missing)."""
    split_patients = arrow_strings(splits["patient_id"])
    scan_patients = arrow_strings(scans["patient_id"])
    keys = string_keys(split_patients, scan_patients)
    if keys is not None:
        differs: npt.NDArray[np.bool_] = keys[0] != keys[1][rows]
        return differs
    taken = scan_patients.take(pa.array(rows))
    return pc.fill_null(pc.not_equal(split_patients, taken), True).to_numpy(zero_copy_only=False)


def _working_table(splits: pd.DataFrame, scans: pd.DataFrame, groups: pd.DataFrame) -> _Joined:
    warnings: list[str] = []
    split_ids = arrow_strings(splits["scan_id"])
    duplicate = _first_duplicate(split_ids)
    if duplicate is not None:
        raise InputError("splits: expected one row per scan, found duplicates", scan=duplicate)
    rows = match_positions(arrow_strings(scans["scan_id"]), split_ids)
    if (rows < 0).any():
        raise InputError("splits: expected every scan in the scans table, found one missing",
                         scan=str(split_ids[int(np.flatnonzero(rows < 0)[0])]))
    if len(scans) > len(splits):
        warnings.append(f"{len(scans) - len(splits)} scan(s) of the scans table have no split")
    work = pd.DataFrame({"scan_id": splits["scan_id"].reset_index(drop=True)})
    for column in _CATEGORY_COLUMNS:
        if column in scans.columns:
            work[column] = _categorical(scans[column], rows)
    for column in _VALUE_COLUMNS:
        if column in scans.columns:
            work[column] = _taken(scans[column], rows)
    coded = {column: _identity_codes(scans[column], rows)
             for _, column in LEAK_KEYS if column in scans.columns}
    group_rows = match_positions(arrow_strings(groups["scan_id"]), split_ids)
    for column in ("analysis_bin", "sampling_group"):
        if column in groups.columns:
            work[column] = _categorical(groups[column], group_rows)
    if (group_rows < 0).any():
        warnings.append(f"{int((group_rows < 0).sum())} scan(s) have no infection-ratio group")
    if "patient_id" in splits.columns:
        differs = _patient_differs(splits, scans, rows)
        if differs.any():
            warnings.append(f"{int(differs.sum())} scan(s) have a different patient id in "
                            "the splits table than in the scans table (first: scan "
                            f"{split_ids[int(np.flatnonzero(differs)[0])]})")
    return _Joined(work=work, coded=coded, rows=rows, warnings=warnings)


def _identities(splits: pd.DataFrame, scans: pd.DataFrame, joined: _Joined,
                picked: npt.NDArray[np.intp]) -> pd.DataFrame:
    """scan_id and the identity columns (strings) of the split rows `picked`."""
    frame = pd.DataFrame({"scan_id": splits["scan_id"].take(picked).reset_index(drop=True)})
    for column in joined.coded:
        frame[column] = scans[column].take(joined.rows[picked]).reset_index(drop=True)
    return frame


def audit_splits(splits: pd.DataFrame, scans: pd.DataFrame, groups: pd.DataFrame,
                 config: SplitConfig, *, against: pd.DataFrame | None = None) -> AuditReport:
    """Check a split for leakage and summarise it per partition (see module docstring)."""
    require_columns(splits, ("scan_id", "set", "fold"), "splits")
    require_columns(scans, ("scan_id", "patient_id", "label"), "scans")
    require_columns(groups, ("scan_id",), "groups")
    k = config.n_folds
    partition = partition_codes(splits, k)
    joined = _working_table(splits, scans, groups)
    work, coded, warnings = joined.work, joined.coded, joined.warnings
    names = partition_names(k)
    # Leaks and shared ids are found on codes; only their rows' strings are read.
    picked = np.flatnonzero(rows_to_describe(coded, partition, len(names)))
    detail = _identities(splits, scans, joined, picked)
    picked_codes = {column: (codes[picked], n) for column, (codes, n) in coded.items()}
    leaks = find_leaks(detail, partition[picked], names, picked_codes)
    shared = find_shared_identities(detail, picked_codes)
    if not shared.empty:
        warnings.append(f"{len(shared)} study/series/volume id(s) occur under more than one "
                        "patient id (see table shared_identities)")

    tables: dict[str, pd.DataFrame] = {
        "overview": overview_table(partition, k, coded["patient_id"][0], work["label"]),
    }
    for name, column in _COUNT_TABLES:
        if column in work.columns:
            tables[name] = count_table(partition, k, work[column])
    tables["demographics"] = demographics_table(partition, k, work, coded["patient_id"][0])
    if "sampling_groups" in tables:
        tables["ss_weights"], weight_warnings = sampler_weight_table(
            tables["sampling_groups"], k, config.min_group_scans)
        warnings.extend(weight_warnings)
    tables["balance"] = balance_table(tables, k)
    tables["shared_identities"] = shared
    empty = [names[i] for i in range(k + 1) if tables["overview"]["scans"].iloc[i] == 0]
    if empty:
        warnings.append(f"empty partition(s): {', '.join(empty)}")
    if leaks.shape[0]:
        counts = leaks["kind"].value_counts()
        warnings.insert(0, "leakage: " + ", ".join(f"{n} {kind} id(s) in several partitions"
                                                   for kind, n in counts.items()))
    version = (str(splits["split_version"].iloc[0])
               if "split_version" in splits.columns and len(splits) else None)
    content = split_version(splits["scan_id"], splits["set"], splits["fold"])
    if version is not None and content != version:
        warnings.insert(0, f"EDITED: the splits table claims split version {version[:12]}, "
                           f"but its assignment is version {content[:12]}: it was changed "
                           "after the split stage wrote it")
    diff = diff_splits(splits, against) if against is not None else None
    return AuditReport(split_version=version, n_folds=k, leaks=leaks, tables=tables,
                       warnings=warnings, diff=diff, content_version=content)
