from __future__ import annotations

from datetime import date

import pytest

from dsan_core.dicom.demographics import parse_age_years, parse_dicom_date, parse_sex
from dsan_core.dicom.ingestion import GROUND_TRUTH_COLUMNS, SCAN_COLUMNS
from storage.schemas import GROUND_TRUTH, SCANS


@pytest.mark.parametrize(("text", "years"), [
    ("045Y", 45.0), ("090Y", 90.0), ("000Y", 0.0),
    ("036M", 3.0), ("006M", 0.5), ("001M", 0.08),  # 1/12 = 0.0833
    ("010W", 0.19),  # 70 days / 365.25 = 0.1916
    ("052W", 1.0),   # 364 days = 0.9966
    ("020D", 0.05),  # 20 / 365.25 = 0.0548
    ("001D", 0.0),   # 0.0027 rounds to 0.00
    ("365D", 1.0),
    ("45Y", 45.0), (" 036m ", 3.0),  # dropped zeros, case and padding
])
def test_every_age_unit_becomes_years(text: str, years: float) -> None:
    assert parse_age_years(text) == pytest.approx(years, abs=1e-9)


@pytest.mark.parametrize("text", ["", None, float("nan"), "Y", "036", "36 Y", "1000Y", "036X",
                                  "-01Y", "abc", "3.5Y"])
def test_missing_or_garbage_age_is_null(text: object) -> None:
    assert parse_age_years(text) is None


@pytest.mark.parametrize(("text", "sex"), [("F", "F"), (" m", "M"), ("O", "O"), ("", None),
                                           ("X", None), (None, None)])
def test_sex(text: object, sex: str | None) -> None:
    assert parse_sex(text) == sex


@pytest.mark.parametrize(("text", "day"), [("20200317", date(2020, 3, 17)), ("", None),
                                           ("2020-03-17", None), ("20201341", None), (None, None)])
def test_dicom_dates(text: object, day: date | None) -> None:
    assert parse_dicom_date(text) == day


def test_row_columns_are_the_table_schemas() -> None:
    assert list(SCAN_COLUMNS) == SCANS.names
    assert list(GROUND_TRUTH_COLUMNS) == GROUND_TRUTH.names
