"""Which transfer syntaxes this installation can decode, and with what.

pydicom decodes native (uncompressed), deflated and RLE data itself, and JPEG /
JPEG 2000 through Pillow when it is installed. SimpleITK ships GDCM, which adds
JPEG lossless and JPEG-LS; `decode_series` falls back to it for those.
"""

from __future__ import annotations

from functools import cache

from pydicom import uid as dicom_uid
from pydicom.pixels import get_decoder

#: Compressed syntaxes the GDCM bundled with SimpleITK can read.
GDCM_SYNTAXES: frozenset[str] = frozenset(
    {
        dicom_uid.JPEGBaseline8Bit,
        dicom_uid.JPEGExtended12Bit,
        dicom_uid.JPEGLossless,
        dicom_uid.JPEGLosslessSV1,
        dicom_uid.JPEGLSLossless,
        dicom_uid.JPEGLSNearLossless,
        dicom_uid.JPEG2000Lossless,
        dicom_uid.JPEG2000,
        dicom_uid.RLELossless,
    }
)


@cache
def pydicom_can_decode(transfer_syntax: str) -> bool:
    """True when pydicom (with the installed plugins) decodes this syntax."""
    syntax = dicom_uid.UID(transfer_syntax)
    if not syntax.is_compressed:
        return True
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return False


def can_decode(transfer_syntax: str) -> bool:
    """True when pydicom or SimpleITK's GDCM can decode this transfer syntax."""
    return pydicom_can_decode(transfer_syntax) or transfer_syntax in GDCM_SYNTAXES
