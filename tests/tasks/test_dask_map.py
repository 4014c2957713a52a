"""`map_on_dask`: results in item order, one bad item fails alone, and the Dask tasks
(about 3 ms each) do not grow one for one with the items."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster, get_task_stream

from tasks._common.dask_map import MAX_BATCH, WorkerError, batch_size, map_on_dask


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def square_unless_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x * x


@pytest.mark.parametrize(("items", "threads", "expected"), [
    (15, 1, 1), (60, 2, 1), (64, 2, 2), (480, 1, 8), (1920, 2, 8), (100_000, 64, 8), (5, 0, 1)])
def test_batch_size(items: int, threads: int, expected: int) -> None:
    assert batch_size(items, threads) == expected


def test_many_items_go_in_batches_and_each_result_is_handed_over(address: str) -> None:
    items = [(i,) for i in range(400)]
    seen: list[int] = []
    with Client(address, set_as_default=False) as client, get_task_stream(client) as stream:
        results = map_on_dask(address, square_unless_seven, items, description="square",
                              on_result=lambda position, _: seen.append(position))
    assert sorted(seen) == list(range(400))
    assert isinstance(results[7], WorkerError) and str(results[7].error) == "seven"
    assert [r for i, r in enumerate(results) if i != 7] == [i * i for i in range(400) if i != 7]
    # 400 items on 2 threads: 12 per task, capped at MAX_BATCH.
    assert len(stream.data) == math.ceil(400 / MAX_BATCH)


def test_items_that_need_resources_go_one_per_task(address: str) -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0", resources={"GPU": 1}) as cluster, \
            Client(cluster.scheduler_address, set_as_default=False) as client, \
            get_task_stream(client) as stream:
        results = map_on_dask(cluster.scheduler_address, square_unless_seven,
                              [(i,) for i in range(40)], description="gpu",
                              resources={"GPU": 1})
    assert results[:3] == [0, 1, 4] and len(stream.data) == 40
