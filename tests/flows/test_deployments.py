"""The deployments' entry points refuse parameters left unfilled at deploy time."""

from __future__ import annotations

import pytest

from deployments.entrypoints import pipeline_deployment, retrain_deployment
from dsan_core.errors import ConfigError


@pytest.mark.parametrize("entry", [pipeline_deployment, retrain_deployment])
def test_unfilled_placeholder_is_refused_naming_the_parameter(entry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="parameter data_root was not filled in"):
        entry.fn(profile="test", data_root="{{ $DSAN_DATA_ROOT }}")
    with pytest.raises(ConfigError, match="parameter labels was not filled in"):
        entry.fn(profile="test", data_root=str(tmp_path), dicom_root=str(tmp_path),
                 labels="{{ $DSAN_DROP_LABELS }}")
