"""Where an export is read from, kept out of anything that records parameters.

Folder names of real exports often carry patient names or record numbers, and Prefect
stores every flow run's parameters in its database. So flows receive an
`ExportLocation`: the real paths in memory, `"<redacted>"` whenever it is serialised.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_serializer

REDACTED = "<redacted>"


class _RedactedPaths(BaseModel):
    """Paths in memory; every field `"<redacted>"` (None stays None) when serialised,
    printed or logged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_serializer
    def _redacted(self) -> dict[str, str | None]:
        return {name: None if getattr(self, name) is None else REDACTED
                for name in type(self).model_fields}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({REDACTED})"

    __str__ = __repr__


class ExportLocation(_RedactedPaths):
    """A DICOM export folder, its labels manifest and (optionally) ground-truth masks."""

    dicom_root: Path
    labels: Path
    masks: Path | None = None


class PredictRequest(_RedactedPaths):
    """New studies to predict (a DICOM folder), optional masks made elsewhere
    (`<SeriesInstanceUID>_{lung,infection}.nii.gz`) and the output folder; redacted like
    `ExportLocation` when serialised."""

    dicom_root: Path
    out: Path
    masks: Path | None = None


class ReviewFolder(_RedactedPaths):
    """A folder of masks for reviewers (`dsan masks export` writes it, `dsan masks import`
    reads the corrections back); redacted like `ExportLocation` when serialised."""

    folder: Path
