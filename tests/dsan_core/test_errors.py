from __future__ import annotations

import pickle

import pytest

from dsan_core.errors import DicomError, InputError, MaskError


@pytest.mark.parametrize("cls", [InputError, DicomError, MaskError])
def test_input_errors_keep_scan_and_reason_across_processes(cls: type[InputError]) -> None:
    error = cls("expected size (1, 2, 3), found (1, 2, 4)", scan="X-1", reason="geometry")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls
    assert (str(back), back.scan, back.reason) == (str(error), "X-1", "geometry")
