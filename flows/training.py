"""The training flow: every (fold, branch) training as its own Prefect task, submitted
as a slot frees, pinned round-robin to the visible GPUs; on a shared Prefect API behind
the `gpu` concurrency limit, held by the flow; then the training tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed

from dsan_core.branches import TRAINED
from dsan_core.config import RuntimeConfig, SplitConfig, TrainConfig
from dsan_core.errors import StageError
from flows.runtime import shared_prefect_api
from flows.segmentation import pick_device
from tasks._common.progress import StageProgress
from tasks.training import (
    BranchOutcome,
    TrainingCluster,
    find_trained_task,
    train_branch_task,
)
from tasks.training_tables import STAGE, TrainingOutcome, training_tables_task

if TYPE_CHECKING:
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder

#: The Prefect concurrency limit that caps the trainings of every run on a shared API:
#: Prefect's limit for the tag `gpu` (`tag:gpu`), held by the training flow.
GPU_LIMIT = "tag:gpu"
#: How often a training sets the limit again after another run lowered it (`gpu_slots`).
LIMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class TrainingResult:
    branches: tuple[BranchOutcome, ...]
    tables: TrainingOutcome
    devices: tuple[str, ...]
    concurrency: int

    def summary(self) -> list[str]:
        trained = sum(b.trained for b in self.branches)
        return [f"trained {trained}, from cache {len(self.branches) - trained} (fold x branch) "
                f"on {', '.join(self.devices)}, {self.concurrency} at a time",
                *self.tables.summary()]


def training_devices(runtime: RuntimeConfig) -> tuple[list[str], int]:
    """The devices training tasks are pinned to (round-robin) and how many run at once:
    one per visible GPU by default; on CPU `runtime.train_concurrency` (default 1: one
    training with every core was measured faster than two with one core each)."""
    import torch

    device = pick_device(runtime)
    if device == "cuda":
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = ["cpu"]
    concurrency = runtime.train_concurrency or (len(devices) if device == "cuda" else 1)
    return devices, concurrency


@contextlib.contextmanager
def gpu_slots(slots: int) -> Iterator[None]:
    """Hold `slots` of the `gpu` limit (set to `slots` first) for this flow run; waits
    while other runs hold them. Its lease is renewed while held; a killed run's slots are
    freed when it expires (a Prefect server's repossessor).

    Another run may set the limit lower while this one waits (a run with fewer devices):
    Prefect then refuses the request (more slots than the limit), and this sets the
    limit again and goes on waiting, up to `LIMIT_ATTEMPTS` times."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    holder = (ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)
              if context and context.flow_run else None)
    with contextlib.ExitStack() as stack:
        for attempt in range(1, LIMIT_ATTEMPTS + 1):
            try:
                stack.enter_context(_acquire_gpu_slots(slots, holder))
            except Exception as error:
                if attempt == LIMIT_ATTEMPTS or not _limit_lowered(error):
                    raise
                get_run_logger().info("another run set the `gpu` limit below the %d slots "
                                      "this training asked for: set to %d again", slots,
                                      slots)
            else:
                break
        yield


def _acquire_gpu_slots(slots: int, holder: ConcurrencyLeaseHolder | None
                       ) -> contextlib.AbstractContextManager[None]:
    """Set the `gpu` limit to `slots` and wait for as many (what `gpu_slots` holds)."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GPU_LIMIT, slots)
        held = client.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots
    if held:
        get_run_logger().info("training waits for the `gpu` limit: other runs hold %d of "
                              "its %d slots (`prefect global-concurrency-limit inspect %s`)",
                              held, slots, GPU_LIMIT)
    return concurrency(GPU_LIMIT, occupy=slots, lease_duration=60, holder=holder)


def _limit_lowered(error: Exception) -> bool:
    """Whether Prefect refused a slot request for asking more than the limit (422)."""
    import httpx
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    cause = error.__cause__
    return (isinstance(error, ConcurrencySlotAcquisitionError)
            and isinstance(cause, httpx.HTTPStatusError)
            and cause.response.status_code == 422)


@flow(name=STAGE, validate_parameters=False)
def training_flow(config: TrainConfig, split: SplitConfig, runtime: RuntimeConfig,
                  data_root: Path, *, folds: tuple[int, ...] | None = None,
                  branches: tuple[str, ...] | None = None,
                  run_id: str | None = None) -> TrainingResult:
    """Train the given folds and branches (default: all), then write the tables from
    every model trained on the current data. With `runtime.train_address` the trainings
    run on that Dask cluster's workers (see `RuntimeConfig`), all submitted at once: the
    scheduler places them by their resources."""
    chosen_folds = folds if folds is not None else tuple(range(split.n_folds))
    chosen_branches = branches if branches is not None else TRAINED
    unknown = [b for b in chosen_branches if b not in TRAINED]
    bad_folds = [f for f in chosen_folds if not 0 <= f < split.n_folds]
    if unknown or bad_folds:
        raise StageError(f"expected branches in {list(TRAINED)} and folds in 0.."
                         f"{split.n_folds - 1}, found {unknown or ''}{bad_folds or ''}")
    pairs = [(f, b) for f in chosen_folds for b in chosen_branches]
    if runtime.train_address:
        futures, devices, concurrency = _submit_to_cluster(
            config, runtime, runtime.train_address, data_root, pairs, run_id)
    else:
        futures, devices, concurrency = _submit_here(config, runtime, data_root, pairs, run_id)
    order = {pair: i for i, pair in enumerate(pairs)}
    outcomes = tuple(sorted((future.result() for future in futures),
                            key=lambda o: order[(o.fold, o.branch)]))
    tables = training_tables_task(data_root, config, split.n_folds, run_id)
    return TrainingResult(outcomes, tables, tuple(devices), concurrency)


def _submit_here(config: TrainConfig, runtime: RuntimeConfig, data_root: Path,
                 pairs: list[tuple[int, str]], run_id: str | None
                 ) -> tuple[list[PrefectFuture[BranchOutcome]], list[str], int]:
    """Trainings in this process: pinned round-robin to the visible GPUs, `concurrency`
    at a time; on a shared Prefect API also behind the `gpu` limit (`gpu_slots`)."""
    devices, concurrency = training_devices(runtime)
    # Cached models only read their manifests: submitted at once, without a slot.
    cached = set(find_trained_task(data_root, config, pairs, run_id))
    futures: list[PrefectFuture[BranchOutcome]] = [
        train_branch_task.with_options(task_run_name=f"find fold {fold} {branch}").submit(
            data_root, config, fold, branch, devices[0], run_id)
        for fold, branch in pairs if (fold, branch) in cached]
    todo = [pair for pair in pairs if pair not in cached]
    # On a shared API the `gpu` limit caps the trainings of every run there: this flow
    # holds all its slots while it trains (one acquisition: each one on Prefect's SQLite
    # may meet a "database is locked" 503 and a 2 s retry). On the embedded API no other
    # run can take a slot; the loop below caps this run's.
    held = (gpu_slots(concurrency) if todo and shared_prefect_api()
            else contextlib.nullcontext())
    running: dict[PrefectFuture[BranchOutcome], str] = {}  # future -> its device
    free = [devices[i % len(devices)] for i in range(concurrency)]  # round-robin slots
    with held, StageProgress("training models (fold x branch)", len(pairs),
                             unit="models") as progress:
        for _ in as_completed(list(futures)):
            progress.advance()
        for fold, branch in todo:
            # Submitted as a slot frees up, on the device it frees.
            if not free:
                finished = next(as_completed(list(running)))
                free.append(running.pop(finished))
                progress.advance()
            named = train_branch_task.with_options(task_run_name=f"train fold {fold} {branch}")
            device = free.pop(0)
            future = named.submit(data_root, config, fold, branch, device, run_id)
            futures.append(future)
            running[future] = device
        for _ in as_completed(list(running)):
            progress.advance()
    return futures, devices, concurrency


def _submit_to_cluster(config: TrainConfig, runtime: RuntimeConfig, address: str,
                       data_root: Path, pairs: list[tuple[int, str]], run_id: str | None
                       ) -> tuple[list[PrefectFuture[BranchOutcome]], list[str], int]:
    """Every training at once to the Dask cluster at `address`; each task waits for its
    worker. Models already trained only read their manifests (no worker needed)."""
    cluster = TrainingCluster(address, dict(runtime.train_resources), runtime.device)
    slots = cluster_slots(address, cluster.resources)
    if slots == 0:
        raise StageError(f"the Dask cluster at {address} has no worker with the resources a "
                         f"training asks for ({cluster.resources}): start workers with "
                         "--resources, or set runtime.train_resources")
    futures = [train_branch_task.with_options(task_run_name=f"train fold {fold} {branch}")
               .submit(data_root, config, fold, branch, runtime.device, run_id, cluster)
               for fold, branch in pairs]
    with StageProgress("training models (fold x branch) on the Dask cluster", len(pairs),
                       unit="models") as progress:
        for _ in as_completed(list(futures)):
            progress.advance()
    return futures, [f"Dask cluster {address}"], slots


def cluster_slots(address: str, resources: dict[str, float]) -> int:
    """How many trainings the cluster's workers can hold at once, by their resources."""
    from distributed import Client

    with Client(address, set_as_default=False, timeout=30) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    total = 0
    for worker in workers:
        has = worker.get("resources", {})
        total += min((int(has.get(name, 0) // need) for name, need in resources.items()
                      if need > 0), default=int(worker.get("nthreads", 1)))
    return total
