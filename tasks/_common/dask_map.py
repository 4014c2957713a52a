"""Fan plain functions out over a Dask scheduler. Workers receive paths and small
arguments and return small manifests; arrays never travel through the scheduler.

Many small items go in batches of up to `MAX_BATCH` per Dask task: Dask costs about
3 ms per task on the 2-core development box (scheduling, and in a threads-only cluster
the scheduler's share of the GIL), which was 13 ms per scan of ingestion's orchestration
overhead at the test profile's size (benchmarks/scale.py). Each worker thread still gets
at least `TASKS_PER_THREAD` tasks, so a few slow items do not leave a thread idle.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks._common.progress import StageProgress

if TYPE_CHECKING:
    from distributed import Client

#: Items per Dask task at most (a killed run recomputes at most one batch per thread
#: beyond the items already stored).
MAX_BATCH = 8
#: Batches only when every worker thread gets at least this many tasks.
TASKS_PER_THREAD = 16


@dataclass(frozen=True)
class WorkerError:
    """An exception raised by a mapped function, with its traceback as text."""

    error: BaseException
    trace: str


def map_on_dask(
    address: str,
    fn: Callable[..., Any],
    items: Sequence[tuple[Any, ...]],
    *,
    description: str,
    unit: str = "",
    artifact_key: str | None = None,
    on_result: Callable[[int, Any], None] | None = None,
    resources: Mapping[str, float] | None = None,
) -> list[Any]:
    """Run `fn(*item)` for every item on the scheduler at `address`; results in item order.

    An exception inside `fn` comes back as a `WorkerError` in place of the result, so
    one bad scan cannot sink the others; callers decide what it means. `on_result(index,
    result)` runs in this process as each item completes (in completion order), so a
    caller can store that item's output before the rest finish. `resources` (Dask's
    abstract worker resources, e.g. {"GPU": 1}) each item needs of its worker; the
    scheduler runs an item only where they are free, and reruns it elsewhere when its
    worker is lost. Dask keys start with `description` (readable in the dashboard).
    Items that need `resources` go one per task; others in batches (`batch_size`), each
    item's result handed over when its batch completes.
    """
    if not items:
        return []
    from distributed import Client, as_completed

    results: list[Any] = [None] * len(items)
    prefix = "-".join(description.split()) or "item"
    with Client(address, set_as_default=False) as client, \
            StageProgress(description, len(items), unit=unit,
                          artifact_key=artifact_key) as progress:
        size = 1 if resources else batch_size(len(items), _threads(client))
        starts = range(0, len(items), size)
        futures = [client.submit(_capture_batch, fn, list(items[start:start + size]),
                                 pure=False, key=f"{prefix}-{start}-{uuid.uuid4().hex[:12]}",
                                 resources=dict(resources) if resources else None)
                   for start in starts]
        first = {future.key: start for future, start in zip(futures, starts, strict=True)}
        for future in as_completed(futures, loop=client.loop):
            for offset, result in enumerate(future.result()):
                position = first[future.key] + offset
                results[position] = result
                if on_result is not None:
                    on_result(position, result)
                progress.advance()
    return results


def batch_size(n_items: int, threads: int) -> int:
    """Items per Dask task: up to MAX_BATCH, keeping TASKS_PER_THREAD tasks per thread."""
    return max(1, min(MAX_BATCH, n_items // (TASKS_PER_THREAD * max(threads, 1))))


def _threads(client: Client) -> int:
    """Worker threads the scheduler has now (at least 1: workers may still be joining)."""
    return max(1, sum(client.nthreads().values()))


def _capture_batch(fn: Callable[..., Any], batch: list[tuple[Any, ...]]) -> list[Any]:
    return [_capture(fn, *item) for item in batch]


def _capture(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - returned to the caller, see map_on_dask
        return WorkerError(error, traceback.format_exc())
