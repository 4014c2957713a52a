"""The flows Prefect deployments run: plain parameters (strings) in, a loaded profile and
the same pipeline as `dsan run` / `dsan retrain` out. `deployments/prefect.yaml` deploys
them (through `deployments.entrypoints`) and `dsan serve` serves them; they live here,
below both, so that the CLI needs nothing from `deployments/`.

A deployment's parameters are stored in Prefect's database: the profile (a name or a
path), the data root, and the drop folder, labels and masks of new studies. Give the
drop a folder name that carries no patient information; from here on the export is an
`ExportLocation`, which Prefect records as "<redacted>".

A deployment's own flow run sends Prefect's heartbeats (how the server tells a crashed
run from a long one); its stage subflows, in the same process, do not: each would wait
up to a second for its heartbeat thread on exit, ~15 s per run for nothing, since the
process they share is the one the parent's heartbeat vouches for.

The pipeline (and with it torch, scikit-learn, matplotlib: ~5 s) is imported when a flow
runs, not with this module: `prefect deploy` and `dsan serve` import it only to read the
two flows' names and parameters.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.errors import ConfigError
from flows.runtime import check_data_root, prefect_environment, quiet_flow_settings
from storage.inputs import ExportLocation

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def _profile(name: str):  # type: ignore[no-untyped-def]
    from dsan_core.config import load_profile

    path = Path(name)
    return load_profile(path if path.suffix in {".yaml", ".yml"} else PROFILES_DIR / f"{name}.yaml")


def _filled(**parameters: str | None) -> None:
    """Prefect leaves an unset `{{ $VAR }}` of prefect.yaml as its literal text."""
    for name, value in parameters.items():
        if value is not None and "{{" in value:
            raise ConfigError(f"parameter {name} was not filled in at deploy time (found "
                              f"{value!r}): export the variable it names before "
                              "`prefect deploy`, or pass --param " + name + "=...")


def _deployment_run_name() -> str:
    from prefect.runtime import flow_run

    from flows.runtime import run_name

    parameters = flow_run.parameters or {}
    return run_name(str(flow_run.flow_name), Path(str(parameters.get("profile", ""))).stem)


def _inputs(profile: str, data_root: str, dicom_root: str | None, labels: str | None,
            masks: str | None):  # type: ignore[no-untyped-def]
    """The data root (checked, Prefect's environment set), the profile and the export
    (default: the profile's drop) of a deployment's parameters."""
    _filled(profile=profile, data_root=data_root, dicom_root=dicom_root, labels=labels,
            masks=masks)
    root = Path(data_root).absolute()
    check_data_root(root)
    prefect_environment(root)
    config = _profile(profile)
    drop, drop_labels, drop_masks = config.retrain.drop(dicom_root, labels, masks)
    return root, config, ExportLocation(dicom_root=drop, labels=drop_labels, masks=drop_masks)


@flow(name="dsan-pipeline", validate_parameters=False, flow_run_name=_deployment_run_name)
def pipeline_deployment(profile: str, data_root: str, dicom_root: str | None = None,
                        labels: str | None = None, masks: str | None = None) -> list[str]:
    """`dsan run` as a deployment: the export (default: the profile's drop) to the report."""
    from flows.pipeline import pipeline_flow

    root, config, export = _inputs(profile, data_root, dicom_root, labels, masks)
    with quiet_flow_settings():  # the stages ride on this run's heartbeat
        result = pipeline_flow(export, config, root)
    return result.summary()


@flow(name="dsan-retrain", validate_parameters=False, flow_run_name=_deployment_run_name)
def retrain_deployment(profile: str, data_root: str, dicom_root: str | None = None,
                       labels: str | None = None, masks: str | None = None) -> list[str]:
    """`dsan retrain` as a deployment (scheduled): add the drop, retrain, gate."""
    from flows.pipeline import retrain_flow

    root, config, export = _inputs(profile, data_root, dicom_root, labels, masks)
    with quiet_flow_settings():  # the stages ride on this run's heartbeat
        result = retrain_flow(export, config, root)
    return result.summary()
