"""Classifier trainings on a real Dask cluster (a scheduler and two worker processes on
loopback, each declaring one fake GPU): placement by resources, and a worker killed
mid-training whose training finishes on the other worker from its last epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from flows.training import cluster_slots, training_flow
from storage.layout import DataLayout
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, subprocess.Popen[bytes]]]]:
    """A scheduler and two single-thread workers with resources GPU=1 (no nanny, so a
    killed worker stays dead)."""
    from distributed import Client

    file = tmp_path / "scheduler.json"
    processes = {"scheduler": _start(
        ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", ":0", "--scheduler-file", str(file)],
        tmp_path / "scheduler.log")}
    try:
        deadline = time.monotonic() + 60
        while not file.exists():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for name in ("w0", "w1"):
            processes[name] = _start(
                ["distributed.cli.dask_worker", address, "--name", name, "--nthreads", "1",
                 "--no-nanny", "--resources", "GPU=1", "--dashboard-address", ":0",
                 "--local-directory", str(tmp_path / name)], tmp_path / f"{name}.log")
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=90)
        yield address, processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _interval(manifest_data: dict[str, str]) -> tuple[datetime, datetime]:
    return (datetime.fromisoformat(manifest_data["started"]),
            datetime.fromisoformat(manifest_data["ended"]))


def test_trainings_run_on_the_workers_and_survive_a_lost_worker(
        prepared_copy: Path, test_config, cluster) -> None:  # type: ignore[no-untyped-def]
    address, processes = cluster
    root = prepared_copy  # segmented, split and pre-processed (conftest)
    runtime = test_config.runtime.model_copy(update={"train_address": address})
    assert cluster_slots(address, {"GPU": 1.0}) == 2

    # Two trainings at once, one per worker (each worker has one GPU).
    four = test_config.train.model_copy(update={"epochs": 4})
    first = training_flow(four, test_config.split, runtime, root, folds=(0,),
                          branches=("att_us", "rn34_us"))
    data = [b.train.data for b in first.branches]
    assert all(b.trained for b in first.branches)
    assert {d["worker"] for d in data} == {w for w in _workers(address)}
    (start_a, end_a), (start_b, end_b) = (_interval(d) for d in data)
    assert start_a < end_b and start_b < end_a, "the two trainings did not overlap"
    assert first.devices == (f"Dask cluster {address}",) and first.concurrency == 2
    predictions = read_table(DataLayout(root), "predictions")
    assert set(predictions.loc[predictions["fold"] == 0, "branch"]) == {"att_us", "rn34_us"}

    # A worker killed after a training's first epoch: the scheduler reruns the training
    # on the other worker, which resumes from last.pt.
    longer = test_config.train.model_copy(update={"epochs": 6})
    layout = DataLayout(root)
    killed: dict[str, str] = {}

    def kill_first_worker_with_a_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for path in layout.root.glob("models/classifier__*/last.pt"):
                if path.parent.name.split("__")[1] in trained_before:
                    continue
                worker = _worker_training(address)
                if worker is not None:
                    name, pid = worker
                    os.kill(pid, signal.SIGKILL)
                    killed["name"] = name
                    return
            time.sleep(0.02)

    trained_before = {p.parent.name.split("__")[1]
                      for p in layout.root.glob("models/classifier__*/best.pt")}
    killer = threading.Thread(target=kill_first_worker_with_a_checkpoint)
    killer.start()
    second = training_flow(longer, test_config.split, runtime, root, folds=(1,),
                           branches=("att_ss",))
    killer.join()
    assert killed, "no worker was killed"
    outcome = second.branches[0]
    assert outcome.trained and outcome.train.data["epochs"] == 6
    survivor = next(n for n in ("w0", "w1") if n != killed["name"])
    assert processes[killed["name"]].wait(timeout=10) != 0
    assert outcome.train.data["worker"] == _workers(address, name=survivor)
    assert outcome.train.data["resumed_after_epoch"] >= 1
    history = read_table(layout, "training_history")
    rows = history[(history["fold"] == 1) & (history["branch"] == "att_ss")]
    assert sorted(rows["epoch"]) == [1, 2, 3, 4, 5, 6]


def _workers(address: str, name: str | None = None):  # type: ignore[no-untyped-def]
    """The workers' addresses (or the address of the worker called `name`)."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        info = client.scheduler_info(n_workers=-1)["workers"]
    if name is None:
        return set(info)
    return next(a for a, w in info.items() if w["name"] == name)


def _worker_training(address: str) -> tuple[str, int] | None:
    """(name, pid) of the worker that is running a training, if one is."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        busy = [a for a, keys in client.processing().items()
                if any(str(k).startswith("training-fold") for k in keys)]
        if not busy:
            return None
        pids = client.run(os.getpid, workers=busy[:1])
        names = client.scheduler_info(n_workers=-1)["workers"]
    worker = busy[0]
    return str(names[worker]["name"]), int(pids[worker])
