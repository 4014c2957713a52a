"""Fan plain functions out over a Dask scheduler. Workers receive paths and small
arguments and return small manifests; arrays never travel through the scheduler."""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from distributed import Client, as_completed

from tasks._common.progress import StageProgress


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
    """
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    prefix = "-".join(description.split()) or "item"
    with Client(address, set_as_default=False) as client, \
            StageProgress(description, len(items), unit=unit,
                          artifact_key=artifact_key) as progress:
        futures = [client.submit(_capture, fn, *item, pure=False,
                                 key=f"{prefix}-{i}-{uuid.uuid4().hex[:12]}",
                                 resources=dict(resources) if resources else None)
                   for i, item in enumerate(items)]
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures, loop=client.loop):
            position = index[future.key]
            results[position] = future.result()
            if on_result is not None:
                on_result(position, results[position])
            progress.advance()
    return results


def _capture(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - returned to the caller, see map_on_dask
        return WorkerError(error, traceback.format_exc())
