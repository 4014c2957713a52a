"""Pseudonyms: HMAC-SHA256 of the original identifier under a secret key.

`pseudonymise("patient", "12345", key)` -> "P-1f0c...": a prefix naming the kind
and 16 hex characters (64 bits) of HMAC-SHA256(key, "<kind>:<value>"). The kind
is part of the message, so equal strings of different kinds get unrelated ids.
Without the key the mapping can neither be inverted nor recomputed.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

from dsan_core.config import PUBLISHED_DEMO_KEY, IngestConfig
from dsan_core.errors import PrivacyError

#: Prefix of each kind of pseudonym.
PREFIXES: dict[str, str] = {"patient": "P-", "study": "S-", "series": "X-", "instance": "I-"}
MIN_KEY_BYTES = 16
_HEX_CHARS = 16

#: Raw column -> (kind, pseudonym column) for `pseudonymise_frame`.
RAW_ID_COLUMNS: dict[str, tuple[str, str]] = {
    "patient_id": ("patient", "patient_key"),
    "study_instance_uid": ("study", "study_key"),
    "series_instance_uid": ("series", "series_key"),
    "chosen_series_uid": ("series", "chosen_series_key"),
    "sop_instance_uid": ("instance", "instance_key"),
}
#: Columns dropped outright by `pseudonymise_frame` (paths, other raw identifiers).
DROPPED_COLUMNS = ("path", "patient_name", "patient_birth_date", "sop_class_uid_raw")


def pseudonymise(kind: str, value: str, key: bytes) -> str:
    """The pseudonym of `value` (a patient id, study/series/instance UID) under `key`."""
    if kind not in PREFIXES:
        raise ValueError(f"kind must be one of {sorted(PREFIXES)}, got {kind!r}")
    if not value:
        # An empty id would merge every such patient/study into one pseudonym.
        raise PrivacyError(f"cannot pseudonymise an empty {kind} identifier")
    digest = hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return PREFIXES[kind] + digest[:_HEX_CHARS]


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible tag of the key (HMAC of a constant), for cache keys: a new
    key gives new pseudonyms, so everything keyed by them must be recomputed."""
    return hmac.new(key, b"dsan-key-fingerprint", hashlib.sha256).hexdigest()[:16]


def is_published_key(key: bytes) -> bool:
    """True for the demo key that anyone can recompute pseudonyms with."""
    return hmac.compare_digest(key, PUBLISHED_DEMO_KEY.encode())


def resolve_pseudonym_key(config: IngestConfig, env_value: str | None) -> bytes:
    """The HMAC key: `config.pseudonym_key`, else `env_value` (DSAN_PSEUDONYM_KEY).

    Refuses (PrivacyError) when neither is set, when the key is shorter than 16
    bytes, and when it is PUBLISHED_DEMO_KEY unless `config.allow_published_key`;
    the caller must then warn loudly (check with `is_published_key`).
    """
    if config.pseudonym_key is not None and config.pseudonym_key.get_secret_value():
        key = config.pseudonym_key.get_secret_value().encode()
    elif env_value:
        key = env_value.encode()
    else:
        raise PrivacyError("no pseudonym key: set ingest.pseudonym_key or DSAN_PSEUDONYM_KEY")
    if is_published_key(key):
        if not config.allow_published_key:
            raise PrivacyError("the published demo key is only allowed by the test and demo "
                               "profiles (ingest.allow_published_key)")
        return key
    if len(key) < MIN_KEY_BYTES:
        raise PrivacyError(f"pseudonym key too short: expected at least {MIN_KEY_BYTES} bytes, "
                           f"found {len(key)}")
    return key


def pseudonymise_frame(frame: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """A copy fit for tables: raw id columns replaced by pseudonyms, paths dropped.

    Each column of RAW_ID_COLUMNS present becomes its pseudonym column ("" stays "");
    DROPPED_COLUMNS are removed.
    """
    out = frame.drop(columns=[c for c in DROPPED_COLUMNS if c in frame.columns])
    for column, (kind, new_column) in RAW_ID_COLUMNS.items():
        if column not in out.columns:
            continue
        cache: dict[str, str] = {}
        values = []
        for raw in out[column].fillna("").astype(str):
            if raw not in cache:
                cache[raw] = pseudonymise(kind, raw, key) if raw else ""
            values.append(cache[raw])
        position = out.columns.get_loc(column)
        out = out.drop(columns=[column])
        out.insert(int(position), new_column, values)  # type: ignore[arg-type]
    return out
