"""`check_export`: what a command checks of an export before it starts any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsan_core.dicom import check_export
from dsan_core.errors import InputError, LabelsError

HEADER = "patient_id,study_instance_uid,diagnosis,site,acquisition_date\n"


@pytest.fixture()
def export(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "dicom").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "labels.csv").write_text(HEADER + "P1,1.1,COVID,site-a,2020-02-01\n")
    (tmp_path / "afile").write_text("")
    return {"dicom": tmp_path / "dicom", "masks": tmp_path / "masks",
            "labels": tmp_path / "labels.csv", "file": tmp_path / "afile",
            "none": tmp_path / "missing"}


def test_a_complete_export_passes(export: dict[str, Path]) -> None:
    check_export(export["dicom"], export["labels"], export["masks"])
    check_export(export["dicom"])  # predict: no labels, no masks


@pytest.mark.parametrize(("dicom", "labels", "masks", "error", "message"), [
    ("none", "labels", None, InputError,
     "expected a folder as the DICOM root (--dicom-root), found nothing there"),
    ("file", "labels", None, InputError,
     "expected a folder as the DICOM root (--dicom-root), found a file"),
    ("dicom", "none", None, LabelsError, "labels manifest not found"),
    ("dicom", "dicom", None, LabelsError, "labels manifest is a folder, not a CSV file"),
    ("dicom", "file", None, LabelsError, "labels manifest is not a readable CSV"),
    ("dicom", "labels", "none", InputError,
     "expected a folder of masks (--masks), found nothing there"),
    ("dicom", "labels", "file", InputError, "expected a folder of masks (--masks), found a file"),
])
def test_each_mistake_is_named(export: dict[str, Path], dicom: str, labels: str,
                               masks: str | None, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_export(export[dicom], export[labels], export[masks] if masks else None)


def test_the_option_named_is_the_commands_own(export: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"DICOM root \(--dicom\), found a file"):
        check_export(export["file"], dicom_option="--dicom")
