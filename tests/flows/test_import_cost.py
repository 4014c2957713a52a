"""What a process pays before it runs anything. A cached rerun (`dsan run`, a
deployment's flow run) and `dsan status` import every stage's tasks but draw no figure,
compute no metric or test and send nothing to Dask: scikit-learn, matplotlib,
scipy.stats and Dask's client (~1.5 s of CPU together, in each such process) are
imported where that work is done, not with the modules."""

from __future__ import annotations

from tests.conftest import loaded_on_import


def test_the_pipeline_and_status_import_no_library_only_their_work_needs() -> None:
    work_only = {"sklearn", "matplotlib", "scipy.stats", "distributed", "dask"}
    assert loaded_on_import("flows.pipeline, tasks.status", work_only) == []
