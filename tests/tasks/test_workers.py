"""Dask workers import `tasks._common.workers` only; it must not pull in Prefect. Its
functions run on several threads of one process at once (a threaded Dask cluster)."""

from __future__ import annotations

import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom.data import get_testdata_file

from tasks._common.workers import index_chunk
from tests.conftest import loaded_on_import


def test_worker_module_does_not_import_prefect() -> None:
    assert loaded_on_import("tasks._common.workers", {"prefect"}) == []


def test_indexing_on_threads_keeps_pydicom_quiet_and_the_warning_filters_intact(
        tmp_path: Path) -> None:
    # Real-world oddities pydicom warns about while reading: an IS value '1A', a
    # dataset in implicit VR where the transfer syntax says explicit.
    odd = []
    for name in ("badVR.dcm", "SC_rgb_jpeg.dcm"):
        source = get_testdata_file(name, download=False)
        assert source is not None, name
        for copy in range(8):
            odd.append(str(shutil.copy(source, tmp_path / f"{copy}-{name}")))
    with warnings.catch_warnings(record=True) as shown:  # this test's own list, restored
        before = list(warnings.filters)
        with ThreadPoolExecutor(4) as pool:
            chunks = list(pool.map(lambda _: index_chunk(odd, [None] * len(odd)), range(24)))
        after = list(warnings.filters)
    # Every chunk read both files (whatever became of each: indexed or quarantined).
    assert all(len(frame) + len(failures) == len(odd) for frame, failures, _ in chunks)
    assert [str(w.message) for w in shown if "pydicom" in w.filename] == []
    # The threads added pydicom's filter and took nothing away. (Overlapping
    # `warnings.catch_warnings` would leave the list as one thread found it: with a
    # filter that ignores every warning of the process, say.)
    assert [f for f in before if f not in after] == []
    added = [f for f in after if f not in before]
    assert [(action, module and module.pattern) for action, _, _, module, _ in added] == [
        ("ignore", r"pydicom(\.|$)")]
