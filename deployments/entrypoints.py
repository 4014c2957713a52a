"""The entry points `prefect.yaml` names: the deployable flows of `flows.entrypoints`
(which `dsan serve` serves too), under the module path the deployments were made with."""

from __future__ import annotations

from flows.entrypoints import pipeline_deployment, retrain_deployment

__all__ = ["pipeline_deployment", "retrain_deployment"]
