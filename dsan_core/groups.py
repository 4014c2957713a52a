"""Infection-ratio groups (METHOD.md "Two kinds of groups").

Every boundary is in `GroupsConfig`; comparisons are exactly the method's:

    sampling_group  covid_small  COVID and ratio <  covid_small_below (0.030)
                    covid_large  COVID and ratio >= covid_small_below
                    cap_small    CAP   and ratio <= cap_small_at_most (0.001)
                    cap_large    CAP   and ratio >  cap_small_at_most
    analysis_bin    '<0.005'  ratio < e0;  '0.005-0.030'  e0 <= ratio <= e1;  '>0.030'  ratio > e1
    ensemble_band   'extreme' when ratio < band_low (0.001) or ratio > band_high (0.030),
                    'middle' otherwise

The bin and band names are fixed strings (they are the paper's table headings), so
a profile with other edges keeps the names; the edges used are in the config.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dsan_core.config import GroupsConfig
from dsan_core.errors import InputError

LABEL_COVID = "COVID"
LABEL_CAP = "CAP"
LABELS: tuple[str, str] = (LABEL_COVID, LABEL_CAP)

COVID_SMALL = "covid_small"
COVID_LARGE = "covid_large"
CAP_SMALL = "cap_small"
CAP_LARGE = "cap_large"
#: In the order of the paper's weight vector W.
SAMPLING_GROUPS: tuple[str, str, str, str] = (COVID_SMALL, COVID_LARGE, CAP_SMALL, CAP_LARGE)

BIN_LOW = "<0.005"
BIN_MID = "0.005-0.030"
BIN_HIGH = ">0.030"
ANALYSIS_BINS: tuple[str, str, str] = (BIN_LOW, BIN_MID, BIN_HIGH)

BAND_EXTREME = "extreme"
BAND_MIDDLE = "middle"
ENSEMBLE_BANDS: tuple[str, str] = (BAND_EXTREME, BAND_MIDDLE)

REQUIRED_COLUMNS: tuple[str, str, str] = ("scan_id", "label", "infection_ratio")


def _check(df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"expected columns {list(REQUIRED_COLUMNS)}, missing {missing}")
    bad_labels = sorted(set(df["label"].astype(str)) - set(LABELS))
    if bad_labels:
        bad = df.loc[~df["label"].isin(LABELS), "scan_id"].iloc[0]
        raise InputError(f"expected labels {list(LABELS)}, found {bad_labels}", scan=str(bad))
    ratio = pd.to_numeric(df["infection_ratio"], errors="coerce")
    outside = ratio.isna() | (ratio < 0) | (ratio > 1)
    if outside.any():
        row = df.loc[outside].iloc[0]
        raise InputError(
            f"expected infection_ratio in [0, 1], found {row['infection_ratio']!r}",
            scan=str(row["scan_id"]),
        )


def ensemble_bands(ratio: np.ndarray, config: GroupsConfig) -> np.ndarray:
    """The ensemble band of every infection ratio (labels are not needed)."""
    extreme = (ratio < config.band_low) | (ratio > config.band_high)
    return np.where(extreme, BAND_EXTREME, BAND_MIDDLE)


def assign_groups(df: pd.DataFrame, config: GroupsConfig) -> pd.DataFrame:
    """A copy of `df` (scan_id, label, infection_ratio, ...) with sampling_group,
    analysis_bin and ensemble_band added as categorical columns."""
    _check(df)
    out = df.copy()
    ratio = out["infection_ratio"].to_numpy(dtype=np.float64)
    covid = (out["label"] == LABEL_COVID).to_numpy()
    group = np.where(
        covid,
        np.where(ratio < config.covid_small_below, COVID_SMALL, COVID_LARGE),
        np.where(ratio <= config.cap_small_at_most, CAP_SMALL, CAP_LARGE),
    )
    low, high = config.bin_edges
    analysis = np.where(ratio < low, BIN_LOW, np.where(ratio <= high, BIN_MID, BIN_HIGH))
    band = ensemble_bands(ratio, config)
    out["sampling_group"] = pd.Categorical(group, categories=list(SAMPLING_GROUPS))
    out["analysis_bin"] = pd.Categorical(analysis, categories=list(ANALYSIS_BINS), ordered=True)
    out["ensemble_band"] = pd.Categorical(band, categories=list(ENSEMBLE_BANDS))
    return out


def size_balanced_weights(group_counts: Mapping[str, int]) -> dict[str, float]:
    """W = [N_covid_large / N_covid_small, 1, 1, N_cap_small / N_cap_large] (METHOD.md
    "Two sampling strategies"), from the number of training scans per sampling group.

    A group that is missing counts as empty. Raises `InputError` when a group is
    empty (the SS branch needs all four) or a name is not a sampling group.
    """
    unknown = sorted(set(group_counts) - set(SAMPLING_GROUPS))
    if unknown:
        raise InputError(f"expected sampling groups {list(SAMPLING_GROUPS)}, found {unknown}")
    counts = {group: int(group_counts.get(group, 0)) for group in SAMPLING_GROUPS}
    empty = [group for group, count in counts.items() if count <= 0]
    if empty:
        raise InputError(
            "size-balanced sampling needs scans in all four sampling groups; "
            f"empty: {empty} (counts {counts})",
            reason="empty_group",
        )
    return {
        COVID_SMALL: counts[COVID_LARGE] / counts[COVID_SMALL],
        COVID_LARGE: 1.0,
        CAP_SMALL: 1.0,
        CAP_LARGE: counts[CAP_SMALL] / counts[CAP_LARGE],
    }
