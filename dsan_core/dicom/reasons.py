"""Stable reason codes of the ingestion stage, documented in one place.

They are plain strings so that they can be stored in Parquet tables and counted
in reports; their meaning never changes once released.

File level (`read_header` / `index_headers`, `FileFailure.reason`):

    not_a_file                   the path is a directory, a broken link or vanished
    unreadable                   the file exists but cannot be opened (permissions, I/O)
    not_dicom                    no DICOM structure could be parsed from the file
    non_image                    a valid DICOM object without an image (DICOMDIR, SR, RT plan...)
    no_pixel_data                an image object whose pixel data element is absent
    truncated                    the pixel data (or the header) stops before its declared end
    missing_tag                  a tag needed downstream is absent or empty (the message names it)
    bad_value                    a needed tag holds a value that cannot be parsed (named)
    unsupported_transfer_syntax  no installed decoder (pydicom plugins, SimpleITK/GDCM) handles it

Series level (`choose_series`, status "skipped": valid but not chosen):

    not_ct, multiframe, localizer, derived, non_axial, thick, too_few_slices,
    fewer_slices, missing_geometry

Series level (`check_geometry` fatal reasons; status "rejected" in `choose_series`):

    missing_geometry, mixed_orientation, mixed_matrix, mixed_pixel_spacing,
    duplicate_slice, missing_slice, nonuniform_spacing, gantry_tilt, too_few_slices

Decoding (`decode_series`): decode_failed (corrupt pixel data), unsupported_image
(colour or multi-frame), unsorted_slices, plus the file-level and geometry codes.

Study level (`SeriesPlan.studies.reason`):

    chosen, no_candidate_series, all_candidates_rejected

Labels (`LabelsReconciliation.counts` keys, see `dsan_core.dicom.labels`):

    matched, missing_label, unknown_label, duplicate_identical, duplicate_conflict,
    patient_mismatch, label_without_dicom, dicom_without_label, bad_date
"""

from __future__ import annotations

from typing import Final

# File level.
NOT_A_FILE: Final = "not_a_file"
UNREADABLE: Final = "unreadable"
NOT_DICOM: Final = "not_dicom"
NON_IMAGE: Final = "non_image"
NO_PIXEL_DATA: Final = "no_pixel_data"
TRUNCATED: Final = "truncated"
MISSING_TAG: Final = "missing_tag"
BAD_VALUE: Final = "bad_value"
UNSUPPORTED_TRANSFER_SYNTAX: Final = "unsupported_transfer_syntax"

FILE_REASONS: Final = (
    NOT_A_FILE,
    UNREADABLE,
    NOT_DICOM,
    NON_IMAGE,
    NO_PIXEL_DATA,
    TRUNCATED,
    MISSING_TAG,
    BAD_VALUE,
    UNSUPPORTED_TRANSFER_SYNTAX,
)

# Series level: skipped (valid, not chosen).
NOT_CT: Final = "not_ct"
MULTIFRAME: Final = "multiframe"
LOCALIZER: Final = "localizer"
DERIVED: Final = "derived"
NON_AXIAL: Final = "non_axial"
THICK: Final = "thick"
TOO_FEW_SLICES: Final = "too_few_slices"
FEWER_SLICES: Final = "fewer_slices"

# Series level: geometry failures (rejected).
MISSING_GEOMETRY: Final = "missing_geometry"
MIXED_ORIENTATION: Final = "mixed_orientation"
MIXED_MATRIX: Final = "mixed_matrix"
MIXED_PIXEL_SPACING: Final = "mixed_pixel_spacing"
DUPLICATE_SLICE: Final = "duplicate_slice"
MISSING_SLICE: Final = "missing_slice"
NONUNIFORM_SPACING: Final = "nonuniform_spacing"
GANTRY_TILT: Final = "gantry_tilt"

# Non-fatal geometry flags.
DUPLICATE_FILE: Final = "duplicate_file"

# Series / study status.
CHOSEN: Final = "chosen"
SKIPPED: Final = "skipped"
REJECTED: Final = "rejected"
NO_CANDIDATE_SERIES: Final = "no_candidate_series"
ALL_CANDIDATES_REJECTED: Final = "all_candidates_rejected"

# Decoding (`decode_series`).
DECODE_FAILED: Final = "decode_failed"
UNSUPPORTED_IMAGE: Final = "unsupported_image"
UNSORTED_SLICES: Final = "unsorted_slices"
