"""Deterministic partition of the scans that have ground truth: train / val / holdout.

Assignment depends only on (seed, scan id), through a hash, so adding scans never
moves existing ones between partitions (a held-out scan stays held out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

TRAIN, VAL, HOLDOUT = "train", "val", "holdout"


def _unit(seed: int, scan_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{scan_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def partition_cases(
    scan_ids: Iterable[str], *, val_fraction: float, holdout_fraction: float, seed: int,
    max_val: int | None = None,
) -> dict[str, str]:
    """Map each scan id to train, val or holdout (about the given fractions).

    With at least 3 scans every partition that has a non-zero fraction gets one scan.
    `max_val` caps the validation scans; the ones over the cap train. Holdout
    membership depends only on (seed, scan id), so added scans never move into it.
    """
    ids = sorted(set(scan_ids))
    units = {scan_id: _unit(seed, scan_id) for scan_id in ids}
    out = {}
    for scan_id in ids:
        u = units[scan_id]
        if u < holdout_fraction:
            out[scan_id] = HOLDOUT
        elif u < holdout_fraction + val_fraction * (1 - holdout_fraction):
            out[scan_id] = VAL
        else:
            out[scan_id] = TRAIN
    if len(ids) >= 3:
        by_unit = sorted(ids, key=units.__getitem__)
        for name, fraction, pick in ((HOLDOUT, holdout_fraction, 0), (TRAIN, 1.0, -1),
                                     (VAL, val_fraction, None)):
            if fraction > 0 and name not in out.values():
                candidates = [s for s in by_unit if list(out.values()).count(out[s]) > 1]
                if pick is None:
                    pick_id = candidates[len(candidates) // 2]
                else:
                    pick_id = candidates[pick]
                out[pick_id] = name
    if max_val is not None:
        val_ids = sorted((s for s in ids if out[s] == VAL), key=units.__getitem__)
        for scan_id in val_ids[max_val:]:
            out[scan_id] = TRAIN
    return out
