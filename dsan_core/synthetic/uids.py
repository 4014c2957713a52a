"""Deterministic DICOM UIDs under a fixed synthetic root.

UIDs are `ROOT.<seed>.<kind>.<numbers...>`, so the same seed always gives the same
UIDs and no two kinds collide. Kinds: 1 study, 2 series, 3 SOP instance, 4 frame of
reference, 9 implementation.
"""

from __future__ import annotations

from dsan_core.errors import ConfigError

#: A registered-looking root reserved here for synthetic data only.
UID_ROOT = "1.2.826.0.1.3680043.10.543"
IMPLEMENTATION_CLASS_UID = f"{UID_ROOT}.9.1"
IMPLEMENTATION_VERSION_NAME = "DSAN_SYNTH_1"


def make_uid(seed: int, kind: int, *numbers: int) -> str:
    """A UID from the seed, a kind code and positive numbers (at most 64 characters)."""
    parts = [str(abs(seed) % 10**9), str(kind), *(str(abs(n)) for n in numbers)]
    uid = ".".join([UID_ROOT, *parts])
    if len(uid) > 64:
        raise ConfigError(f"UID must be at most 64 characters, got {len(uid)}: {uid}")
    return uid
