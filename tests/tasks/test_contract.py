"""`cached_map`: per-item cache, computed here or on Dask, each manifest stored as its
item completes, so a run killed after k of n items recomputes exactly n - k."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dsan_core.errors import InputError, ItemFailed
from storage.atomic import write_text
from storage.stage_cache import Manifest, artifact
from tasks._common.contract import MapItem, StageItems, StageRun, cached_map

N_ITEMS = 6

_RUN = textwrap.dedent('''
    import os, signal, sys, time
    from pathlib import Path

    from storage.atomic import TEMP_PREFIX, write_text
    from storage.stage_cache import Manifest, artifact
    from tasks._common.contract import MapItem, StageItems, StageRun, cached_map

    root, kill_at, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    stored = root / "cache" / "item-stage"

    def n_stored():
        # Not a manifest still being written: its temp file ends in .json too.
        return sum(not p.name.startswith(TEMP_PREFIX) for p in stored.glob("*.json"))

    def compute(index, out):
        if index == kill_at:
            # Die like a SIGKILL once the items before this one have stored their
            # manifests (on Dask they complete asynchronously).
            deadline = time.monotonic() + 20
            while n_stored() < kill_at and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        write_text(Path(out), f"output of item {index}")
        return index

    def run_all(address):
        with StageRun.open(root) as run:
            items = [MapItem(f"item-{i}", {"i": str(i)}, (i, str(root / "out" / f"{i}.txt")))
                     for i in range(int(sys.argv[4]))]
            finish = lambda item, key, _: Manifest("item-stage", key, {
                "out": artifact(run.layout, Path(item.args[1]), run.memo)})
            result = cached_map(run, StageItems("item-stage", "1", "c", items),
                                compute=compute, finish=finish, address=address)
            print(result.computed, result.cached)

    if mode == "dask":
        from distributed import LocalCluster
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                          dashboard_address=":0") as cluster:
            run_all(cluster.scheduler_address)
    else:
        run_all(None)
''')


def _run(root: Path, kill_at: int, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUN, str(root), str(kill_at), mode,
                           str(N_ITEMS)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", ["local", "dask"])
def test_killed_run_resumes_from_the_items_that_finished(tmp_path: Path, mode: str) -> None:
    killed = _run(tmp_path, kill_at=3, mode=mode)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _run(tmp_path, kill_at=-1, mode=mode)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split() == [str(N_ITEMS - 3), "3"]
    again = _run(tmp_path, kill_at=-1, mode=mode)
    assert again.stdout.split() == ["0", str(N_ITEMS)]


def test_bad_input_fails_its_item_alone(tmp_path: Path) -> None:
    def compute(index: int) -> Manifest:
        if index == 1:
            raise InputError("expected a lung, found none", scan="X-1")
        path = tmp_path / "out" / f"{index}.txt"
        write_text(path, str(index))
        return Manifest("s", "", {"out": artifact(run.layout, path, run.memo)})

    with StageRun.open(tmp_path) as run:
        items = [MapItem(f"X-{i}", {"i": str(i)}, (i,)) for i in range(3)]
        result = cached_map(run, StageItems("s", "1", "c", items), compute=compute)
    assert list(result.manifests) == ["X-0", "X-2"]
    assert result.failures == {"X-1": "scan X-1: expected a lung, found none"}
    assert (result.computed, result.cached) == (2, 0)


def _count_into(calls: list[int], path_of: Path) -> object:
    def compute(index: int, broken: bool) -> int:
        calls.append(index)
        if broken and index == 1:
            return {}["no such key"]  # a bug, not bad input
        write_text(path_of / f"{index}.txt", str(index))
        return index
    return compute


@pytest.mark.parametrize("mode", ["local", "dask"])
def test_a_bug_in_one_item_fails_the_stage_naming_it_after_storing_the_rest(
        tmp_path: Path, mode: str) -> None:
    calls: list[int] = []
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("dsan").addHandler(handler)
    out = tmp_path / "out"

    def run_map(broken: bool, address: str | None) -> object:
        with StageRun.open(tmp_path) as run:
            items = [MapItem(f"X-{i}", {"i": str(i)}, (i, broken)) for i in range(3)]
            finish = lambda item, key, _: Manifest("s", key, {  # noqa: E731
                "out": artifact(run.layout, out / f"{item.args[0]}.txt", run.memo)})
            return cached_map(run, StageItems("s", "1", "c", items),
                              compute=_count_into(calls, out), finish=finish, address=address)

    def both(address: str | None) -> None:
        with pytest.raises(ItemFailed, match=r"s: 1 item\(s\) failed .*X-1 \(KeyError"):
            run_map(True, address)
        assert any("Traceback" in line and "no such key" in line for line in logged)
        calls.clear()
        fixed = run_map(False, address)
        assert (fixed.computed, fixed.cached) == (1, 2)  # type: ignore[attr-defined]
        if address is None:  # (Dask runs a pickled copy of `compute`)
            assert calls == [1]

    try:
        if mode == "local":
            both(None)
        else:
            from distributed import LocalCluster

            with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                              dashboard_address=":0") as cluster:
                both(cluster.scheduler_address)
    finally:
        logging.getLogger("dsan").removeHandler(handler)


def test_a_lineage_row_times_the_whole_stage(tmp_path: Path) -> None:
    from storage.lineage import read_lineage
    from tasks._common.contract import StageInputs, cached_stage

    with StageRun.open(tmp_path) as run:
        time.sleep(0.3)  # the stage's work before it writes its table
        cached_stage(run, StageInputs("s", "1", "c", {}), compute=lambda key: Manifest("s", key))
    row = read_lineage(run.layout).iloc[-1]
    assert (row["ended_at"] - row["started_at"]).total_seconds() >= 0.3
