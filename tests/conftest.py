"""Shared fixtures. Flow tests share ONE session-scoped Prefect test harness
(~8 s to start), with flow heartbeats off and results not persisted."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dsan_core.synthetic import CohortSummary

PROFILES = Path(__file__).resolve().parent.parent / "profiles"

# `make test` runs the suite on two pytest-xdist workers. The tests that share one of
# these session fixtures go to one worker together, so each chain is built once.
SHARED_CHAINS = {
    "pipeline": {"pipeline_root", "pipeline_copy", "pipeline_cli_run"},
    "prepared": {"prepared_root", "prepared_copy"},
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for group, fixtures in SHARED_CHAINS.items():
            if used & fixtures:
                item.add_marker(pytest.mark.xdist_group(group))
                break


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables that are not set yet; restore them all on exit."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def loaded_on_import(modules: str, watched: set[str]) -> list[str]:
    """Which of `watched` a fresh interpreter holds after `import <modules>` (what a
    process pays before it runs anything), sorted."""
    probe = (f"import json, sys, {modules}; "
             f"print(json.dumps(sorted(set({sorted(watched)!r}) & set(sys.modules))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    return list(json.loads(done.stdout))


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("prefect-home")
    with environment(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                     PREFECT_RESULTS_PERSIST_BY_DEFAULT="false"):
        from prefect.testing.utilities import prefect_test_harness

        from flows.runtime import quiet_flow_settings

        with prefect_test_harness(server_startup_timeout=120), quiet_flow_settings():
            yield


@pytest.fixture(scope="session")
def test_config():  # type: ignore[no-untyped-def]
    from dsan_core.config import load_profile

    return load_profile(PROFILES / "test.yaml")


@dataclass(frozen=True)
class GeneratedCohort:
    """The test profile's synthetic export, what `generate_cohort` returned, and the
    progress it reported as (done, total) pairs. Read only."""

    root: Path
    summary: CohortSummary
    progress: list[tuple[int, int]]


@pytest.fixture(scope="session")
def generated_cohort(tmp_path_factory: pytest.TempPathFactory, test_config  # type: ignore[no-untyped-def]
                     ) -> GeneratedCohort:
    """Written once per session (per worker): the export tests check it, the flow tests
    ingest it (`cohort` in tests/flows)."""
    from dsan_core.synthetic import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    calls: list[tuple[int, int]] = []
    summary = generate_cohort(test_config.synth, out,
                              progress=lambda done, total: calls.append((done, total)))
    return GeneratedCohort(out, summary, calls)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    # CLI commands run in-process set the embedded Prefect defaults in os.environ.
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
