"""DICOM ingestion: index headers, choose a series per study, check geometry, decode
to HU, pseudonymise identifiers and reconcile labels. Pure functions, no I/O beyond
reading the given files. Arrays are (z, y, x); spacings (x, y, z) mm; HU units.
"""

from __future__ import annotations

from dsan_core.dicom.decode import AIR_HU, Volume, decode_series
from dsan_core.dicom.geometry import GeometryReport, check_geometry
from dsan_core.dicom.headers import HeaderRecord, read_header
from dsan_core.dicom.index import (
    RECORD_COLUMNS,
    FileFailure,
    check_export,
    discover_files,
    index_headers,
    list_export,
    records_to_frame,
)
from dsan_core.dicom.ingestion import (
    DecodeJob,
    IngestPlan,
    IngestTables,
    ingestion_tables,
    merge_tables,
    plan_ingestion,
    require_scans,
)
from dsan_core.dicom.labels import (
    LabelsReconciliation,
    normalise_diagnosis,
    read_labels,
    reconcile_labels,
)
from dsan_core.dicom.pseudonym import (
    is_published_key,
    key_fingerprint,
    pseudonymise,
    pseudonymise_frame,
    resolve_pseudonym_key,
)
from dsan_core.dicom.rows import DecodedSeries
from dsan_core.dicom.series import SeriesPlan, choose_series

__all__ = [
    "AIR_HU",
    "RECORD_COLUMNS",
    "DecodeJob",
    "DecodedSeries",
    "FileFailure",
    "GeometryReport",
    "HeaderRecord",
    "IngestPlan",
    "IngestTables",
    "LabelsReconciliation",
    "SeriesPlan",
    "Volume",
    "check_export",
    "check_geometry",
    "choose_series",
    "decode_series",
    "discover_files",
    "index_headers",
    "list_export",
    "merge_tables",
    "ingestion_tables",
    "is_published_key",
    "key_fingerprint",
    "normalise_diagnosis",
    "plan_ingestion",
    "pseudonymise",
    "pseudonymise_frame",
    "read_header",
    "read_labels",
    "require_scans",
    "reconcile_labels",
    "records_to_frame",
    "resolve_pseudonym_key",
]
