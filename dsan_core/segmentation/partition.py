"""Deterministic partition of the scans that have ground truth: train / val / holdout.

Per patient: all scans of a patient share a partition (a patient with repeat scans on
both sides of the hold-out would flatter the evaluation). Assignment depends only on
(seed, patient id), through a hash, so adding scans never moves existing patients
between partitions (a held-out patient stays held out). Without patient ids each
scan is its own patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

TRAIN, VAL, HOLDOUT = "train", "val", "holdout"


def _unit(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _partition_groups(units: dict[str, float], val_fraction: float,
                      holdout_fraction: float) -> dict[str, str]:
    out = {}
    for key, u in units.items():
        if u < holdout_fraction:
            out[key] = HOLDOUT
        elif u < holdout_fraction + val_fraction * (1 - holdout_fraction):
            out[key] = VAL
        else:
            out[key] = TRAIN
    if len(units) >= 3:
        by_unit = sorted(units, key=units.__getitem__)
        for name, fraction, pick in ((HOLDOUT, holdout_fraction, 0), (TRAIN, 1.0, -1),
                                     (VAL, val_fraction, None)):
            if fraction > 0 and name not in out.values():
                candidates = [k for k in by_unit if list(out.values()).count(out[k]) > 1]
                chosen = candidates[len(candidates) // 2] if pick is None else candidates[pick]
                out[chosen] = name
    return out


def partition_cases(
    scan_ids: Iterable[str], *, val_fraction: float, holdout_fraction: float, seed: int,
    max_val: int | None = None, patients: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each scan id to train, val or holdout (about the given fractions of patients).

    `patients` maps scan id -> pseudonymous patient id. With at least 3 patients every
    partition that has a non-zero fraction gets one. `max_val` caps the validation
    scans: whole patients beyond the cap train. Holdout membership depends only on
    (seed, patient id), so added scans never move into or out of it.
    """
    ids = sorted(set(scan_ids))
    group = {scan_id: (patients or {}).get(scan_id, scan_id) for scan_id in ids}
    units = {key: _unit(seed, key) for key in sorted(set(group.values()))}
    by_group = _partition_groups(units, val_fraction, holdout_fraction)
    if max_val is not None:
        taken = 0
        for key in sorted((k for k in units if by_group[k] == VAL), key=units.__getitem__):
            size = sum(1 for scan_id in ids if group[scan_id] == key)
            if taken + size <= max_val:
                taken += size
            else:
                by_group[key] = TRAIN
    return {scan_id: by_group[group[scan_id]] for scan_id in ids}
