"""Shared fixtures. Flow tests share ONE session-scoped Prefect test harness
(~8 s to start), with flow heartbeats off and results not persisted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    from prefect.testing.utilities import prefect_test_harness

    from flows.runtime import quiet_flow_settings

    with prefect_test_harness(server_startup_timeout=120), quiet_flow_settings():
        yield


@pytest.fixture(scope="session")
def test_config():  # type: ignore[no-untyped-def]
    from dsan_core.config import load_profile

    return load_profile(PROFILES / "test.yaml")
