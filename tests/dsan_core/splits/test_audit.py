from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from dsan_core.config import SplitConfig
from dsan_core.errors import InputError
from dsan_core.groups import size_balanced_weights
from dsan_core.splits import make_splits
from dsan_core.splits.audit import audit_splits
from tests.dsan_core.splits.split_cohort import make_cohort

CONFIG = SplitConfig(policy="date", cutoff_date=date(2020, 2, 10), min_group_scans=2)


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    scans, groups = make_cohort(60)
    return scans, groups, make_splits(scans, groups, CONFIG).table


def _two_patients_in_different_partitions(splits: pd.DataFrame) -> tuple[str, str]:
    tv = splits[splits["set"] == "tv"].drop_duplicates("patient_id")
    a = tv.iloc[0]
    b = tv[tv["fold"] != a["fold"]].iloc[0]
    return str(a["scan_id"]), str(b["scan_id"])


def test_clean_split_has_no_leaks_and_full_tables(cohort) -> None:
    scans, groups, splits = cohort
    report = audit_splits(splits, scans, groups, CONFIG)
    assert not report.has_leakage and report.leaks.empty
    assert {"overview", "sites", "manufacturers", "analysis_bins", "sampling_groups",
            "demographics", "ss_weights", "balance"} <= set(report.tables)
    overview = report.tables["overview"]
    assert overview.loc["all", "scans"] == len(scans)
    assert overview.loc["all", "patients"] == 60
    assert overview.loc["tv", "scans"] + overview.loc["test", "scans"] == len(scans)
    assert overview.loc[[f"fold {i}" for i in range(5)], "scans"].sum() == overview.loc[
        "tv", "scans"]
    assert (overview["COVID"] + overview["CAP"] == overview["scans"]).all()
    demo = report.tables["demographics"]
    assert (demo["F"] + demo["M"] + demo["unknown"] == demo["patients"]).all()
    # Patients 40..59 (scans on Feb 10 or later) are test, and p0039 too (its second
    # scan is on Feb 10): ages 59..79, median 69, Q1 64.
    assert demo.loc["test", "patients"] == 21
    assert demo.loc["test", "age_median"] == pytest.approx(69.0)
    assert demo.loc["test", "age_q1"] == pytest.approx(64.0)


def test_ss_weights_are_computed_on_training_folds(cohort) -> None:
    scans, groups, splits = cohort
    report = audit_splits(splits, scans, groups, CONFIG)
    merged = splits.merge(groups, on="scan_id")
    train = merged[(merged["set"] == "tv") & (merged["fold"] != 2)]
    expected = size_balanced_weights(train["sampling_group"].value_counts().to_dict())
    row = report.tables["ss_weights"].loc["train fold 2"]
    for group, weight in expected.items():
        assert row[f"W_{group}"] == pytest.approx(weight, abs=1e-4)
        assert row[f"N_{group}"] == (train["sampling_group"] == group).sum()


def test_same_patient_in_two_folds_is_a_leak(cohort) -> None:
    scans, groups, splits = cohort
    leaky = splits.copy()
    twice = leaky[leaky["patient_id"] == "p0000"].index  # p0000 has two scans
    other = (int(leaky.loc[twice[0], "fold"]) + 1) % 5
    leaky.loc[twice[1], "fold"] = other
    report = audit_splits(leaky, scans, groups, CONFIG)
    assert report.has_leakage
    leak = report.leaks[report.leaks["kind"] == "patient"].iloc[0]
    assert leak["key"] == "p0000" and leak["scan_ids"] == "s00000; s00001"
    assert "LEAKAGE FOUND" in report.to_markdown()


def test_patient_in_tv_and_test_is_a_leak(cohort) -> None:
    scans, groups, splits = cohort
    leaky = splits.copy()
    row = leaky.index[leaky["scan_id"] == "s00001"][0]
    leaky.loc[row, ["set", "fold"]] = ["test", pd.NA]
    report = audit_splits(leaky, scans, groups, CONFIG)
    assert "test" in report.leaks.iloc[0]["partitions"]


@pytest.mark.parametrize(("column", "kind"), [("volume_hash", "volume"), ("study_id", "study"),
                                              ("series_id", "series")])
def test_shared_identity_under_two_patients_is_a_leak(cohort, column: str, kind: str) -> None:
    scans, groups, splits = cohort
    first, second = _two_patients_in_different_partitions(splits)
    leaky = scans.copy()
    value = leaky.loc[leaky["scan_id"] == first, column].iloc[0]
    leaky.loc[leaky["scan_id"] == second, column] = value
    report = audit_splits(splits, leaky, groups, CONFIG)
    leaks = report.leaks[report.leaks["kind"] == kind]
    assert len(leaks) == 1 and leaks.iloc[0]["key"] == value
    assert set(leaks.iloc[0]["scan_ids"].split("; ")) == {first, second}
    assert len(report.tables["shared_identities"]) == 1
    assert any("more than one patient" in w for w in report.warnings)


def test_shared_identity_in_one_partition_is_only_a_warning(cohort) -> None:
    scans, groups, splits = cohort
    tv = splits[splits["set"] == "tv"].drop_duplicates("patient_id")
    fold = tv.iloc[0]["fold"]
    same = tv[tv["fold"] == fold]["scan_id"].tolist()[:2]
    leaky = scans.copy()
    leaky.loc[leaky["scan_id"] == same[1], "study_id"] = leaky.loc[
        leaky["scan_id"] == same[0], "study_id"].iloc[0]
    report = audit_splits(splits, leaky, groups, CONFIG)
    assert not report.has_leakage
    assert len(report.tables["shared_identities"]) == 1


def test_small_sampling_group_warns(cohort) -> None:
    scans, groups, splits = cohort
    strict = CONFIG.model_copy(update={"min_group_scans": 1000})
    report = audit_splits(splits, scans, groups, strict)
    assert len([w for w in report.warnings if "training fold" in w]) == 5
    only_small = groups.assign(sampling_group=groups["sampling_group"].replace(
        "cap_large", "cap_small"))
    report = audit_splits(splits, scans, only_small, CONFIG)
    assert report.tables["ss_weights"]["W_cap_large"].isna().all()
    assert any("cap_large=0" in w for w in report.warnings)


def test_balance_statistics(cohort) -> None:
    scans, groups, splits = cohort
    balance = audit_splits(splits, scans, groups, CONFIG).tables["balance"].set_index("test")
    assert balance.loc["label x fold", "dof"] == 4
    assert balance.loc["analysis_bin x fold", "dof"] == 8
    assert balance["p_value"].between(0, 1).all()
    # Stratified folds: label and bin are independent of the fold.
    assert (balance["p_value"] > 0.5).all()


def test_diff_against_an_earlier_split(cohort) -> None:
    scans, groups, splits = cohort
    earlier = splits.copy()
    mover = earlier.index[earlier["patient_id"] == "p0001"]
    old_fold = int(earlier.loc[mover[0], "fold"])
    earlier.loc[mover, "fold"] = (old_fold + 1) % 5
    earlier = earlier[earlier["patient_id"] != "p0002"]  # p0002 is new now
    gone = earlier.iloc[[0]].assign(scan_id="s77770", patient_id="p7777")
    earlier = pd.concat([earlier, gone], ignore_index=True)
    report = audit_splits(splits, scans, groups, CONFIG, against=earlier)
    diff = report.diff
    assert diff is not None
    assert diff.moved.to_dict("records") == [{
        "patient_id": "p0001", "old_assignment": f"fold {(old_fold + 1) % 5}",
        "new_assignment": f"fold {old_fold}"}]
    assert diff.new_patients == ("p0002",) and diff.disappeared_patients == ("p7777",)
    assert diff.new_scans == 1 and diff.disappeared_scans == 1


def test_report_renders_to_markdown_and_json(cohort) -> None:
    scans, groups, splits = cohort
    report = audit_splits(splits, scans, groups, CONFIG, against=splits)
    text = report.to_markdown()
    assert text.startswith("# Split audit") and "no leakage found" in text
    assert "## overview" in text and "| partition |" in text
    payload = json.loads(json.dumps(report.to_json_dict()))
    assert payload["has_leakage"] is False
    assert payload["split_version"] == splits["split_version"].iloc[0]
    assert payload["diff"]["moved_patients"] == 0
    assert len(payload["tables"]["overview"]) == 8


@pytest.mark.parametrize("problem", ["tv_without_fold", "fold_out_of_range", "unknown_scan",
                                     "bad_set"])
def test_bad_split_tables_are_rejected(cohort, problem: str) -> None:
    scans, groups, splits = cohort
    bad = splits.copy()
    tv_row = bad.index[bad["set"] == "tv"][0]
    if problem == "tv_without_fold":
        bad.loc[tv_row, "fold"] = pd.NA
    elif problem == "fold_out_of_range":
        bad.loc[tv_row, "fold"] = 7
    elif problem == "unknown_scan":
        bad.loc[tv_row, "scan_id"] = "s_unknown"
    else:
        bad.loc[tv_row, "set"] = "train"
    with pytest.raises(InputError) as error:
        audit_splits(bad, scans, groups, CONFIG)
    assert error.value.scan is not None
