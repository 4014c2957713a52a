"""The deployments' entry points refuse parameters left unfilled at deploy time."""

from __future__ import annotations

import pytest

from deployments.entrypoints import pipeline_deployment, retrain_deployment
from dsan_core.errors import ConfigError
from tests.conftest import loaded_on_import


@pytest.mark.parametrize("entry", [pipeline_deployment, retrain_deployment])
def test_unfilled_placeholder_is_refused_naming_the_parameter(entry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="parameter data_root was not filled in"):
        entry.fn(profile="test", data_root="{{ $DSAN_DATA_ROOT }}")
    with pytest.raises(ConfigError, match="parameter labels was not filled in"):
        entry.fn(profile="test", data_root=str(tmp_path), dicom_root=str(tmp_path),
                 labels="{{ $DSAN_DROP_LABELS }}")


@pytest.mark.parametrize(("entry", "stages"), [(pipeline_deployment, "pipeline_flow"),
                                               (retrain_deployment, "retrain_flow")])
def test_the_stages_of_a_deployment_send_no_heartbeats(entry, stages, tmp_path,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Each stage subflow with heartbeats on waits up to 1 s for its thread when it ends.
    from prefect.settings import get_current_settings

    import flows.pipeline

    seen: list[int | None] = []

    class Done:
        def summary(self) -> list[str]:
            return ["done"]

    def stage_flow(*_args: object) -> Done:
        seen.append(get_current_settings().flows.heartbeat_frequency)
        return Done()

    monkeypatch.setattr(flows.pipeline, stages, stage_flow)  # imported when run
    outside = get_current_settings().flows.heartbeat_frequency
    assert entry.fn(profile="test", data_root=str(tmp_path / "data"),
                    dicom_root=str(tmp_path), labels=str(tmp_path / "labels.csv")) == ["done"]
    assert seen == [None]
    assert get_current_settings().flows.heartbeat_frequency == outside


def test_deploying_imports_no_pipeline() -> None:
    # `prefect deploy` and `dsan serve` import the entry points to read the flows' names
    # and parameters: the pipeline (torch, scikit-learn, matplotlib: ~5 s) waits for a run.
    heavy = {"flows.pipeline", "torch", "sklearn", "matplotlib"}
    assert loaded_on_import("deployments.entrypoints", heavy) == []
