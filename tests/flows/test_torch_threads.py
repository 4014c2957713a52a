"""Torch-heavy tasks run on a task-runner thread of their flow, never on the process's
main thread, so no libgomp worker pool outlives the flow that made it (a second pool in
`dsan run` made every later classifier epoch 1.5x slower on 2 cores)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import torch
from prefect import flow, task

from flows.runtime import off_main_thread

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def two_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@task
def parallel_op() -> bool:
    torch.ones(1 << 22).sin().sum()  # large enough for an OpenMP parallel region
    return threading.current_thread() is threading.main_thread()


@flow
def torch_flow() -> bool:
    result: bool = off_main_thread(parallel_op)
    return result


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_torch_tasks_leave_no_thread_pool_behind(two_torch_threads: None) -> None:
    assert torch_flow() is False  # ran off the main thread
    settled = _os_threads()  # Prefect's own long-lived threads exist by now
    assert torch_flow() is False
    deadline = time.monotonic() + 10
    while _os_threads() > settled and time.monotonic() < deadline:
        time.sleep(0.05)  # the ended thread's OpenMP workers exit asynchronously
    assert _os_threads() <= settled
