"""Hounsfield units shared by every stage."""

from __future__ import annotations

#: Air, in HU: what dsan writes where a scan has no data (the scanner's padding outside
#: the reconstruction circle, and the border added when a volume is resampled or padded).
AIR_HU = -1024.0
