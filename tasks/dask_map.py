"""Fan plain functions out over a Dask scheduler, with a progress bar and a Prefect
progress artifact. Workers receive paths and small arguments and return small
manifests; arrays never travel through the scheduler."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, as_completed


def _artifact(key: str, description: str) -> Any:
    try:
        from prefect.artifacts import create_progress_artifact

        return create_progress_artifact(progress=0.0, key=key, description=description)
    except Exception:  # noqa: BLE001 - outside a run context there is nothing to report to
        return None


def _update(artifact_id: Any, progress: float) -> None:
    if artifact_id is None:
        return
    from prefect.artifacts import update_progress_artifact

    update_progress_artifact(artifact_id=artifact_id, progress=progress)


def map_on_dask(
    address: str,
    fn: Callable[..., Any],
    items: Sequence[tuple[Any, ...]],
    *,
    description: str,
    artifact_key: str | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Run `fn(*item)` for every item on the scheduler at `address`; results in item order.

    An exception inside `fn` is returned in place of the result (as the exception
    object), so one bad scan cannot sink the others; callers decide what it means.
    `on_result(index, result)` runs in this process as each item completes (in
    completion order), so a caller can store that item's output before the rest finish.
    """
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    artifact_id = _artifact(artifact_key, description) if artifact_key else None
    show_bar = sys.stdout.isatty()
    with Client(address, set_as_default=False) as client:
        futures = [client.submit(_capture, fn, *item, pure=False) for item in items]
        index = {future.key: i for i, future in enumerate(futures)}
        progress = None
        if show_bar:
            from rich.progress import Progress

            progress = Progress(transient=True)
            progress.start()
            bar = progress.add_task(description, total=len(items))
        step = max(1, len(items) // 20)
        try:
            for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
                position = index[future.key]
                results[position] = future.result()
                if on_result is not None:
                    on_result(position, results[position])
                if progress is not None:
                    progress.update(bar, completed=done)
                if done % step == 0 or done == len(items):
                    _update(artifact_id, 100.0 * done / len(items))
        finally:
            if progress is not None:
                progress.stop()
    return results


def _capture(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - returned to the caller, see map_on_dask
        return error
