"""The ground-truth masks of a data root: those imported at ingestion (`ground_truth`),
joined and, scan by scan, replaced by the reviewed ones (`mask_reviews`, the latest
import of each scan). Everything that trains on or scores against ground truth reads
it here, so an imported review reaches the VB-Net's training set, its evaluation and,
for segmentation method ground_truth, the classifier's masks; keys are the masks'
content hashes, so only what a review changed recomputes."""

from __future__ import annotations

import pandas as pd

from storage.layout import DataLayout
from storage.schemas import GROUND_TRUTH, MASK_REVIEWS
from storage.tables import read_table, table_exists

#: Where a scan's ground truth came from.
INGESTED, REVIEWED = "ingested", "reviewed"


def latest_reviews(layout: DataLayout) -> pd.DataFrame:
    """The latest `mask_reviews` row of every reviewed scan (empty when none)."""
    if not table_exists(layout, "mask_reviews"):
        return pd.DataFrame(columns=MASK_REVIEWS.names)
    reviews = read_table(layout, "mask_reviews").sort_values("reviewed_at", kind="stable")
    return reviews.groupby("scan_id", sort=True).tail(1).reset_index(drop=True)


def truth_masks(layout: DataLayout) -> pd.DataFrame:
    """scan_id, lung/infection paths and hashes, and `source` (ingested | reviewed), one
    row per scan with ground truth, sorted by scan id."""
    ingested = (read_table(layout, "ground_truth") if table_exists(layout, "ground_truth")
                else pd.DataFrame(columns=GROUND_TRUTH.names))
    reviewed = latest_reviews(layout)[GROUND_TRUTH.names]
    ingested = ingested[~ingested["scan_id"].isin(set(reviewed["scan_id"]))]
    frames = [frame.assign(source=source) for frame, source in
              ((ingested, INGESTED), (reviewed, REVIEWED)) if len(frame)]
    if not frames:
        return pd.DataFrame(columns=[*GROUND_TRUTH.names, "source"])
    return pd.concat(frames, ignore_index=True).sort_values("scan_id", ignore_index=True)
