"""DICOM demographics as table values: Age String (AS), sex (CS) and dates (DA).

Age (PS3.5 "AS"): "nnnD", "nnnW", "nnnM" or "nnnY" -> years as a float rounded to
2 decimals (1/100 year, about 3.7 days), with a year of 365.25 days: "036M" -> 3.0,
"010W" -> 0.19 (70 days), "020D" -> 0.05. One to three digits are accepted (some
exporters drop the leading zeros); anything else, and "", is None, never an error:
a header with an odd age is still a usable CT.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pandas as pd

_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
DAYS_PER_YEAR = 365.25
#: Years per unit of a DICOM age string.
AGE_UNITS: dict[str, float] = {
    "D": 1.0 / DAYS_PER_YEAR,
    "W": 7.0 / DAYS_PER_YEAR,
    "M": 1.0 / 12.0,
    "Y": 1.0,
}


def parse_age_years(text: Any) -> float | None:
    """Years of a DICOM age string, rounded to 2 decimals; None when absent or malformed."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return None
    match = _AGE.match(str(text).strip().upper())
    if not match:
        return None
    return round(int(match.group(1)) * AGE_UNITS[match.group(2)], 2)


def parse_sex(text: Any) -> str | None:
    """"F", "M" or "O" (PS3.3 Patient's Sex); None for anything else."""
    value = str(text or "").strip().upper()
    return value if value in {"F", "M", "O"} else None


def parse_dicom_date(text: Any) -> date | None:
    """A DICOM DA value (YYYYMMDD) as a date; None when absent or malformed."""
    try:
        stamp = pd.to_datetime(str(text), format="%Y%m%d")
    except (ValueError, TypeError):
        return None
    return None if pd.isna(stamp) else stamp.date()
