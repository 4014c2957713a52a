"""Where an export is read from, kept out of anything that records parameters.

Folder names of real exports often carry patient names or record numbers, and Prefect
stores every flow run's parameters in its database. So flows receive an
`ExportLocation`: the real paths in memory, `"<redacted>"` whenever it is serialised.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_serializer

REDACTED = "<redacted>"


class ExportLocation(BaseModel):
    """A DICOM export folder, its labels manifest and (optionally) ground-truth masks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dicom_root: Path
    labels: Path
    masks: Path | None = None

    @model_serializer
    def _redacted(self) -> dict[str, str | None]:
        return {"dicom_root": REDACTED, "labels": REDACTED,
                "masks": None if self.masks is None else REDACTED}

    def __repr__(self) -> str:
        return f"ExportLocation({REDACTED})"

    __str__ = __repr__


class PredictRequest(BaseModel):
    """New studies to predict (a DICOM folder), optional masks made elsewhere
    (`<SeriesInstanceUID>_{lung,infection}.nii.gz`) and the output folder; redacted like
    `ExportLocation` when serialised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dicom_root: Path
    out: Path
    masks: Path | None = None

    @model_serializer
    def _redacted(self) -> dict[str, str | None]:
        return {"dicom_root": REDACTED, "out": REDACTED,
                "masks": None if self.masks is None else REDACTED}

    def __repr__(self) -> str:
        return f"PredictRequest({REDACTED})"

    __str__ = __repr__
