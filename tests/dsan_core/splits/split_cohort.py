"""A hand-checkable split cohort shared by the split and audit tests (not collected)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

BINS = ("<0.005", "0.005-0.030", ">0.030")


def make_cohort(n_patients: int = 40, first: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient i: COVID when i is even; 2 scans when i % 3 == 0; bin cycles with i // 2."""
    scans, groups = [], []
    for i in range(first, first + n_patients):
        for repeat in range(1 + (i % 3 == 0)):
            scan_id = f"s{i:04d}{repeat}"
            label = "COVID" if i % 2 == 0 else "CAP"
            scans.append({
                "scan_id": scan_id, "patient_id": f"p{i:04d}", "study_id": f"st{i:04d}{repeat}",
                "series_id": f"se{i:04d}{repeat}", "label": label,
                "site": f"site-{'abc'[i % 3]}", "manufacturer": ["GE", "Siemens"][i % 2],
                "acquisition_date": pd.Timestamp(date(2020, 1, 1) + timedelta(days=i + repeat)),
                "age_years": 20 + i % 60, "sex": "FM"[i % 2], "volume_hash": f"h{i:04d}{repeat}",
                "label_split": "test" if i % 4 == 0 else "tv",
            })
            bin_ = BINS[(i // 2) % 3]
            small = bin_ != ">0.030" if label == "COVID" else bin_ == "<0.005"
            group = f"{label.lower()}_{'small' if small else 'large'}"
            groups.append({"scan_id": scan_id, "analysis_bin": bin_, "sampling_group": group})
    scans_df = pd.DataFrame(scans)
    scans_df["age_years"] = scans_df["age_years"].astype("Int16")
    return scans_df, pd.DataFrame(groups)
