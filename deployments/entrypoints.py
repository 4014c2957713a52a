"""The flows Prefect deployments run: plain parameters (strings) in, a loaded profile and
the same pipeline as `dsan run` / `dsan retrain` out.

A deployment's parameters are stored in Prefect's database: the profile (a name or a
path), the data root, and the drop folder, labels and masks of new studies. Give the
drop a folder name that carries no patient information; from here on the export is an
`ExportLocation`, which Prefect records as "<redacted>".
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.errors import ConfigError
from flows.pipeline import PipelineResult, pipeline_flow, retrain_flow
from flows.runtime import check_data_root, prefect_environment
from storage.inputs import ExportLocation

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def _profile(name: str):  # type: ignore[no-untyped-def]
    from dsan_core.config import load_profile

    path = Path(name)
    return load_profile(path if path.suffix in {".yaml", ".yml"} else PROFILES_DIR / f"{name}.yaml")


def _export(config, dicom_root: str | None, labels: str | None,  # type: ignore[no-untyped-def]
            masks: str | None) -> ExportLocation:
    drop = dicom_root or config.retrain.drop_dicom_root
    drop_labels = labels or config.retrain.drop_labels
    if drop is None or drop_labels is None:
        raise ConfigError("no drop folder: give the deployment's dicom_root and labels, or set "
                          "retrain.drop_dicom_root and retrain.drop_labels in the profile")
    drop_masks = masks or config.retrain.drop_masks
    return ExportLocation(dicom_root=Path(drop), labels=Path(drop_labels),
                          masks=Path(drop_masks) if drop_masks else None)


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


def _prepared(profile: str, data_root: str):  # type: ignore[no-untyped-def]
    root = Path(data_root).absolute()
    check_data_root(root)
    prefect_environment(root)
    return root, _profile(profile)


@flow(name="dsan-pipeline", validate_parameters=False, flow_run_name=_deployment_run_name)
def pipeline_deployment(profile: str, data_root: str, dicom_root: str | None = None,
                        labels: str | None = None, masks: str | None = None) -> list[str]:
    """`dsan run` as a deployment: the export (default: the profile's drop) to the report."""
    _filled(profile=profile, data_root=data_root, dicom_root=dicom_root, labels=labels,
            masks=masks)
    root, config = _prepared(profile, data_root)
    result: PipelineResult = pipeline_flow(_export(config, dicom_root, labels, masks), config,
                                           root)
    return result.summary()


@flow(name="dsan-retrain", validate_parameters=False, flow_run_name=_deployment_run_name)
def retrain_deployment(profile: str, data_root: str, dicom_root: str | None = None,
                       labels: str | None = None, masks: str | None = None) -> list[str]:
    """`dsan retrain` as a deployment (scheduled): add the drop, retrain, gate."""
    _filled(profile=profile, data_root=data_root, dicom_root=dicom_root, labels=labels,
            masks=masks)
    root, config = _prepared(profile, data_root)
    result = retrain_flow(_export(config, dicom_root, labels, masks), config, root)
    return result.summary()
