"""The exceptions dsan raises on purpose.

    DsanError                    base of everything below
    ├── ConfigError              a profile or option is invalid (names the field)
    ├── PrivacyError             a run would leak or cannot pseudonymise (e.g. no key)
    ├── InputError               bad input data; `scan` names it by pseudonymous id
    │   ├── DicomError           a file or series cannot be used
    │   │   └── GeometryError    slice spacing, missing/duplicate slices, tilt, matrix
    │   ├── LabelsError          the labels manifest is malformed
    │   └── MaskError            a mask does not match its scan (geometry, values)
    ├── ModelError               a model cannot be trained, loaded or applied (no training
    │                            cases, an empty sampling group, a foreign checkpoint)
    ├── RegistryError            the model registry refuses: an unknown or ambiguous model,
    │                            nothing to roll back to, models that cannot be compared
    ├── StorageError             a table or artifact is missing or fails validation
    │   ├── SchemaError          a Parquet table's schema is not the expected one
    │   └── LockedError          another process is working on the data root (storage/)
    ├── StageError               a stage cannot run (missing upstream output, etc.);
    │                            raised by the pipeline layer (tasks/, flows/), never by
    │                            dsan_core
    └── ServerError              a Prefect server cannot be started or does not answer
                                 (`dsan server`, `dsan ui`, `dsan serve`)

    ItemFailed (a RuntimeError, not a DsanError: a bug, not bad input)
                                 an item of a stage raised something other than a
                                 DsanError; raised by `tasks._common.contract.cached_map`

Messages say what was expected, what was found and which scan - never a patient
name, a patient id or a raw file path.
"""

from __future__ import annotations


class DsanError(Exception):
    """Base class of dsan's own errors."""


class ConfigError(DsanError):
    """A configuration value or profile is invalid."""


class PrivacyError(DsanError):
    """Pseudonymisation is impossible or would be unsafe."""


class InputError(DsanError):
    """Input data is unusable. `scan` is a pseudonymous id (or None)."""

    def __init__(self, message: str, *, scan: str | None = None, reason: str = "invalid") -> None:
        self.scan = scan
        self.reason = reason
        self.detail = message
        prefix = f"scan {scan}: " if scan else ""
        super().__init__(prefix + message)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled across Dask workers: keep scan and reason (the default would not).
        return (_rebuild_input_error, (type(self), self.detail, self.scan, self.reason))


def _rebuild_input_error(cls: type[InputError], message: str, scan: str | None,
                         reason: str) -> InputError:
    return cls(message, scan=scan, reason=reason)


class DicomError(InputError):
    """A DICOM file or series cannot be used."""


class GeometryError(DicomError):
    """A series' geometry is inconsistent."""


class LabelsError(InputError):
    """The labels manifest is malformed."""


class MaskError(InputError):
    """A mask does not fit its scan."""


class ModelError(DsanError):
    """A model cannot be trained, loaded or applied."""


class RegistryError(DsanError):
    """The model registry refuses a transition or a comparison."""


class StorageError(DsanError):
    """A stored table or artifact is missing or invalid."""


class SchemaError(StorageError):
    """A Parquet table does not have the expected schema."""


class LockedError(StorageError):
    """Another process is working on the data root."""


class StageError(DsanError):
    """A pipeline stage cannot run."""


class ServerError(DsanError):
    """A Prefect server cannot be started or does not answer."""


class ItemFailed(RuntimeError):
    """An item of a stage raised something other than a `DsanError`: a bug, not bad input.
    The stage fails (after the other items are stored) naming the items; each traceback
    is logged."""
