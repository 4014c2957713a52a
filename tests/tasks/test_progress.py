"""The progress artifact's API calls do not grow with the number of items."""

from __future__ import annotations

import types
from typing import Any

import pytest

import tasks._common.progress as progress_module
from tasks._common.progress import ARTIFACT_EVERY_S, StageProgress


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Progress values sent to the (fake) Prefect artifact."""
    import prefect.artifacts

    sent: list[float] = []

    def update(*, artifact_id: Any, progress: float) -> None:
        sent.append(progress)

    monkeypatch.setattr(progress_module, "_artifact", lambda key, description: "artifact-id")
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact", update)
    return sent


@pytest.mark.parametrize("items", [30, 1920])
def test_a_fast_stage_updates_its_artifact_once_whatever_its_size(
        clock: _Clock, updates: list[float], items: int) -> None:
    with StageProgress("scans", items, artifact_key="k", terminal=False) as progress:
        for _ in range(items):
            progress.advance()
    assert updates == [100.0] and progress.artifact_updates == 1


def test_a_slow_stage_updates_its_artifact_about_once_a_second(
        clock: _Clock, updates: list[float]) -> None:
    with StageProgress("scans", 10, artifact_key="k", terminal=False) as progress:
        for step in range(10):
            clock.now += ARTIFACT_EVERY_S / 2  # two steps a period
            progress.advance()
            assert len(updates) == (step + 1) // 2
    assert updates == [20.0, 40.0, 60.0, 80.0, 100.0]
