"""Splits stage and split audit through the real Prefect engine and the real CLI:
cache hit + byte-identical rerun, new patients never move old ones, reshuffle makes a
new version that the audit diffs against, injected leakage makes the CLI exit 1."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from typer.testing import CliRunner

from flows.cli import app
from flows.splits import audit_splits_flow, split_flow
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.schemas import GROUPS, SCANS
from storage.tables import read_table, write_table

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _pseudonym(kind: str, i: int | str) -> str:
    return hashlib.sha256(f"{kind}-{i}".encode()).hexdigest()[:20]


def _cohort(patients: range) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient i: CAP when i % 3 == 0; 2 scans when i < 15; ratio cycles so that all four
    sampling groups occur; acquisition dates spread on both sides of 2020-04-01."""
    scans, groups = [], []
    for i in patients:
        label = "CAP" if i % 3 == 0 else "COVID"
        for repeat in range(1 + (i < 15)):
            scan = _pseudonym("scan", f"{i}-{repeat}")
            ratio = [0.0005, 0.01, 0.05][(i + repeat) % 3]
            row = {name: None for name in SCANS.names}
            row.update(scan_id=scan, patient_id=_pseudonym("patient", i),
                       study_id=_pseudonym("study", f"{i}-{repeat}"),
                       series_id=_pseudonym("series", f"{i}-{repeat}"), label=label,
                       site=f"site-{'ab'[i % 2]}", manufacturer="GE", age_years=30 + i,
                       sex="FM"[i % 2], n_slices=40, volume_hash=_pseudonym("volume", scan),
                       volume_path=f"volumes/{scan}.nii.gz",
                       acquisition_date=date(2020, 3, 1) + timedelta(days=(i * 7) % 60
                                                                     + 3 * repeat))
            scans.append(row)
            if label == "COVID":
                group = "covid_small" if ratio < 0.030 else "covid_large"
            else:
                group = "cap_small" if ratio <= 0.001 else "cap_large"
            bin_ = "<0.005" if ratio < 0.005 else ("0.005-0.030" if ratio <= 0.030 else ">0.030")
            groups.append({"scan_id": scan, "label": label, "infection_ratio": ratio,
                           "sampling_group": group, "analysis_bin": bin_,
                           "ensemble_band": "extreme" if ratio < 0.001 or ratio > 0.030
                           else "middle"})
    return pd.DataFrame(scans, columns=SCANS.names), pd.DataFrame(groups, columns=GROUPS.names)


def _data_root(root: Path, patients: range) -> DataLayout:
    layout = DataLayout(root)
    scans, groups = _cohort(patients)
    write_table(layout, "scans", scans)
    write_table(layout, "groups", groups)
    return layout


def _assignment(splits: pd.DataFrame) -> pd.Series:
    fold = splits["fold"].astype("Int64").astype("string").fillna("-")
    return (splits["set"] + "/" + fold).set_axis(splits["scan_id"])


def test_cached_rerun_new_patients_reshuffle_and_diff(tmp_path: Path, test_config) -> None:  # type: ignore[no-untyped-def]
    config = test_config.split
    layout = _data_root(tmp_path / "data", range(30))
    first = split_flow(config, layout.root)
    assert len(read_table(layout, "scans")) == 45
    assert first.new_patients == 30 and not first.reshuffled
    splits_bytes = layout.table("splits").read_bytes()
    assert layout.split_version(first.version).read_bytes() == splits_bytes
    assert set(read_table(layout, "splits")["set"]) == {"tv", "test"}

    again = split_flow(config, layout.root)
    assert again.version == first.version and again.new_patients == 0
    assert layout.table("splits").read_bytes() == splits_bytes
    lineage = read_lineage(layout)
    assert list(lineage.loc[lineage["stage"] == "split", "cache_hit"]) == [False, True]

    # Same inputs and seed in another data root: the same bytes.
    other = _data_root(tmp_path / "other", range(30))
    split_flow(config, other.root)
    assert other.table("splits").read_bytes() == splits_bytes

    # Ten new patients: every old scan keeps its set and fold.
    before = _assignment(read_table(layout, "splits"))
    _data_root(layout.root, range(40))
    grown = split_flow(config, layout.root)
    after = _assignment(read_table(layout, "splits"))
    assert grown.new_patients == 10 and len(after) == 55
    assert after.reindex(before.index).equals(before)
    assert grown.version != first.version
    assert "nobody moved" in grown.summary()[0]

    reshuffled = split_flow(config, layout.root, reshuffle=True)
    assert reshuffled.reshuffled and reshuffled.version != grown.version
    assert reshuffled.new_patients == 0
    assert reshuffled.summary()[0].startswith("RESHUFFLED: new split version")
    assert set(layout.split_versions()) == {first.version, grown.version,
                                            reshuffled.version}
    # A plain rerun after a reshuffle keeps the reshuffled split (and its bytes).
    reshuffled_bytes = layout.table("splits").read_bytes()
    assert split_flow(config, layout.root).version == reshuffled.version
    assert layout.table("splits").read_bytes() == reshuffled_bytes
    lineage = read_lineage(layout)
    assert list(lineage.loc[lineage["stage"] == "split", "cache_hit"]) == [
        False, True, False, False, True]

    audit = audit_splits_flow(config, layout.root, against=grown.version[:10])
    assert not audit.has_leakage
    report = json.loads(layout.resolve(audit.json).read_text())
    moved_now = _assignment(read_table(layout, "splits"))
    scans = read_table(layout, "scans").set_index("scan_id")["patient_id"]
    moved = set(scans[after.index[after != moved_now.reindex(after.index)]])
    assert moved and {row["patient_id"] for row in report["diff"]["moved"]} == moved
    assert report["diff"]["old_version"] == grown.version
    assert any(line.startswith("moved: ") for line in audit.summary())
    markdown = layout.resolve(audit.report).read_text()
    assert "Diff against the earlier split" in markdown and sorted(moved)[0] in markdown
    for text in (markdown, json.dumps(report)):
        assert str(tmp_path) not in text and "volumes/" not in text

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            like_="split-audit-")))
    assert {"split-audit-report", "split-audit-overview", "split-audit-ss-weights",
            "split-audit-moved"} <= {artifact.key for artifact in found}

    # Same audit again: a verified cache hit.
    assert audit_splits_flow(config, layout.root, against=grown.version[:10]) == replace(
        audit, stage=replace(audit.stage, data=audit.stage.data | {"cache_hit": True}))


def test_cli_split_audit_and_injected_leakage(tmp_path: Path) -> None:
    layout = _data_root(tmp_path / "data", range(30))
    runner = CliRunner()
    common = ["--profile", "test", "--data-root", str(layout.root)]
    result = runner.invoke(app, ["split", *common])
    assert result.exit_code == 0, result.output
    assert "split version" in result.output
    clean = runner.invoke(app, ["audit-splits", *common])
    assert clean.exit_code == 0, clean.output
    assert "no leakage found" in clean.output
    unknown = runner.invoke(app, ["audit-splits", "--against", "fff", *common])
    assert unknown.exit_code == 2 and "no stored split version" in unknown.output

    # One patient across two folds; one volume under two patients in different folds.
    splits = read_table(layout, "splits")
    tv = splits[splits["set"] == "tv"]
    twice = tv[tv["patient_id"].duplicated(keep=False)].iloc[0]
    row = splits.index[splits["scan_id"] == twice["scan_id"]][0]
    splits.loc[row, "fold"] = 1 - int(twice["fold"])
    write_table(layout, "splits", splits)
    scans = read_table(layout, "scans")
    partition = splits.set_index("scan_id")["fold"].astype("Int64").fillna(-1)
    a = tv[tv["fold"] == 0].drop_duplicates("patient_id", keep=False).iloc[0]["scan_id"]
    b = tv[tv["fold"] == 1].drop_duplicates("patient_id", keep=False).iloc[0]["scan_id"]
    assert partition[a] != partition[b]
    shared_hash = scans.loc[scans["scan_id"] == a, "volume_hash"].iloc[0]
    scans.loc[scans["scan_id"] == b, "volume_hash"] = shared_hash
    write_table(layout, "scans", scans)

    leaky = runner.invoke(app, ["audit-splits", *common])
    assert leaky.exit_code == 1, leaky.output
    assert "LEAKAGE FOUND" in leaky.output
    assert f"leak: patient {twice['patient_id']}" in leaky.output
    assert f"leak: volume {shared_hash}" in leaky.output
    # The edited table is audited under its content's version; the clean report of the
    # version it claims is still there, unchanged.
    reports = layout.report("splits", "x").parent
    report = json.loads(next(reports.glob("*-edited.json")).read_text())
    assert report["has_leakage"] and report["leak_counts"] == {"patient": 1, "volume": 1}
    assert report["edited"] and "EDITED" in leaky.output
    clean_report = json.loads(next(p for p in reports.glob("*.json")
                                   if "edited" not in p.name).read_text())
    assert not clean_report["has_leakage"] and not clean_report["edited"]
    for path in layout.report("splits", "x").parent.iterdir():
        assert str(tmp_path) not in path.read_text()


def test_a_split_table_edited_with_pandas_is_audited_not_refused(tmp_path: Path) -> None:
    layout = _data_root(tmp_path / "data", range(30))
    runner = CliRunner()
    common = ["--profile", "test", "--data-root", str(layout.root)]
    assert runner.invoke(app, ["split", *common]).exit_code == 0
    # What a quick pandas edit does: fold becomes double, strings large_string; here it
    # also moves one scan of a two-scan patient to another fold (a leak).
    edited = pd.read_parquet(layout.table("splits"))
    edited["fold"] = edited["fold"].astype("float64")
    tv = edited[edited["set"] == "tv"]
    twice = tv[tv["patient_id"].duplicated(keep=False)].iloc[0]
    edited.loc[edited["scan_id"] == twice["scan_id"], "fold"] = 1.0 - twice["fold"]
    edited.to_parquet(layout.table("splits"))
    audit = runner.invoke(app, ["audit-splits", *common])
    assert audit.exit_code == 1, audit.output
    assert "EDITED" in audit.output and f"leak: patient {twice['patient_id']}" in audit.output
