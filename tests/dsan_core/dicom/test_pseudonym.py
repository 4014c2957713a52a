from __future__ import annotations

import re

import pandas as pd
import pytest
from pydantic import SecretStr

from dsan_core.config import PUBLISHED_DEMO_KEY, IngestConfig
from dsan_core.dicom.pseudonym import (
    is_published_key,
    pseudonymise,
    pseudonymise_frame,
    resolve_pseudonym_key,
)
from dsan_core.errors import PrivacyError

KEY = b"k" * 32
UID = "1.2.840.113619.2.55.3.604688119.971.1234567890.123"


@pytest.mark.parametrize(("kind", "prefix"), [
    ("patient", "P-"), ("study", "S-"), ("series", "X-"), ("instance", "I-")])
def test_format_and_determinism(kind: str, prefix: str) -> None:
    first = pseudonymise(kind, UID, KEY)
    assert re.fullmatch(prefix + "[0-9a-f]{16}", first)
    assert pseudonymise(kind, UID, KEY) == first


def test_known_value() -> None:
    # HMAC-SHA256(b"k"*32, b"patient:PAT-001"), first 16 hex characters.
    import hashlib
    import hmac

    expected = hmac.new(KEY, b"patient:PAT-001", hashlib.sha256).hexdigest()[:16]
    assert pseudonymise("patient", "PAT-001", KEY) == "P-" + expected


def test_key_kind_and_value_dependence() -> None:
    base = pseudonymise("study", UID, KEY)
    assert pseudonymise("study", UID, b"j" * 32) != base
    assert pseudonymise("series", UID, KEY)[2:] != base[2:]
    assert pseudonymise("study", UID + "1", KEY) != base


@pytest.mark.parametrize("value", ["PAT-001", UID, "12345678"])
def test_raw_value_not_inside(value: str) -> None:
    assert value not in pseudonymise("patient", value, KEY)


def test_empty_and_unknown_kind_refused() -> None:
    with pytest.raises(PrivacyError):
        pseudonymise("patient", "", KEY)
    with pytest.raises(ValueError):
        pseudonymise("name", "x", KEY)


def test_key_from_config_then_env() -> None:
    config = IngestConfig(pseudonym_key=SecretStr("c" * 20))
    assert resolve_pseudonym_key(config, "e" * 20) == b"c" * 20
    assert resolve_pseudonym_key(IngestConfig(), "e" * 20) == b"e" * 20


@pytest.mark.parametrize("env", [None, ""])
def test_no_key_refused(env: str | None) -> None:
    with pytest.raises(PrivacyError):
        resolve_pseudonym_key(IngestConfig(), env)


def test_short_key_refused() -> None:
    with pytest.raises(PrivacyError, match="16 bytes"):
        resolve_pseudonym_key(IngestConfig(), "x" * 15)
    assert resolve_pseudonym_key(IngestConfig(), "x" * 16) == b"x" * 16


def test_published_key_policy() -> None:
    with pytest.raises(PrivacyError):
        resolve_pseudonym_key(IngestConfig(), PUBLISHED_DEMO_KEY)
    with pytest.raises(PrivacyError):
        resolve_pseudonym_key(IngestConfig(pseudonym_key=SecretStr(PUBLISHED_DEMO_KEY)), None)
    key = resolve_pseudonym_key(IngestConfig(allow_published_key=True), PUBLISHED_DEMO_KEY)
    assert is_published_key(key)
    assert not is_published_key(KEY)


def test_pseudonymise_frame_removes_raw_identifiers() -> None:
    frame = pd.DataFrame({
        "path": ["/export/Doe_Jane/IM1"], "patient_id": ["PAT-001"],
        "study_instance_uid": [UID], "series_instance_uid": [UID + ".2"],
        "chosen_series_uid": [""], "modality": ["CT"],
    })
    out = pseudonymise_frame(frame, KEY)
    assert list(out.columns) == ["patient_key", "study_key", "series_key",
                                 "chosen_series_key", "modality"]
    assert out.loc[0, "patient_key"] == pseudonymise("patient", "PAT-001", KEY)
    assert out.loc[0, "chosen_series_key"] == ""
    text = out.to_csv()
    for raw in ("PAT-001", UID, "Doe_Jane", "/export"):
        assert raw not in text
