"""Ingestion benchmark: header indexing rate and whole-ingest time, serial vs Dask.

Generates the synthetic demo cohort once (or reuses --cohort DIR), then measures in ONE run:
  1. header indexing (pydicom, header only + content hash) serially in this process,
  2. the same over a local Dask cluster (2 worker processes),
  3. the whole ingestion flow (fresh data root each time, so nothing is cached) with a
     1-worker/1-thread cluster vs 2 worker processes.
Prints files/s, seconds and the Dask/serial ratios. Usage:

    .venv/bin/python benchmarks/ingest.py [--profile demo] [--cohort DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--cohort", type=Path, default=None, help="reuse an existing cohort")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dsan-bench-ingest-"))
    from flows.runtime import prefect_environment

    prefect_environment(work / "prefect-root")
    from dsan_core.config import load_profile
    from dsan_core.dicom import discover_files
    from dsan_core.synthetic import generate_cohort

    config = load_profile(ROOT / "profiles" / f"{args.profile}.yaml")
    cohort = args.cohort
    if cohort is None:
        cohort = work / "cohort"
        started = time.perf_counter()
        generate_cohort(config.synth, cohort)
        print(f"generated the {args.profile} cohort in {time.perf_counter() - started:.1f} s")
    files = discover_files(cohort / "dicom")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; files: {len(files)}")

    from tasks._common.workers import index_chunk

    chunk = config.ingest.index_chunk_size
    chunks = [([str(p) for p in files[i : i + chunk]], [None] * len(files[i : i + chunk]))
              for i in range(0, len(files), chunk)]
    started = time.perf_counter()
    for paths, known in chunks:
        index_chunk(paths, known)
    serial = time.perf_counter() - started

    from dsan_core.config import DaskConfig
    from flows.runtime import dask_scheduler
    from tasks._common.contract import resolve_address
    from tasks._common.dask_map import map_on_dask

    dask_config = DaskConfig(n_workers=2, threads_per_worker=1, processes=True)
    with dask_scheduler(dask_config) as lazy:
        address = resolve_address(lazy)
        map_on_dask(address, index_chunk, chunks[:2], description="warm-up")
        started = time.perf_counter()
        map_on_dask(address, index_chunk, chunks, description="indexing")
        parallel = time.perf_counter() - started
    print("\nheader indexing (header read + sha256 of every file)")
    print(f"  serial, in-process      {serial:7.2f} s  {len(files) / serial:8.0f} files/s")
    print(f"  Dask, 2 processes       {parallel:7.2f} s  {len(files) / parallel:8.0f} files/s")
    print(f"  ratio serial/Dask       {serial / parallel:7.2f}x")

    from flows.ingestion import ingestion_flow
    from flows.runtime import quiet_flow_settings
    from storage.inputs import ExportLocation

    timings = {}
    runtimes = {
        "1 worker, 1 thread": config.runtime.model_copy(
            update={"dask": DaskConfig(n_workers=1, threads_per_worker=1, processes=False)}),
        "Dask, 2 processes": config.runtime.model_copy(update={"dask": dask_config}),
    }
    with quiet_flow_settings():
        for name, runtime in runtimes.items():
            root = work / f"data-{len(timings)}"
            started = time.perf_counter()
            export = ExportLocation(dicom_root=cohort / "dicom", labels=cohort / "labels.csv",
                                    masks=cohort / "masks")
            result = ingestion_flow(export, config.ingest, runtime, root)
            timings[name] = time.perf_counter() - started
            assert result.summary.series_cached == 0
    print("\nwhole ingestion flow (cold cache; includes cluster start-up)")
    for name, seconds in timings.items():
        print(f"  {name:22s}  {seconds:7.2f} s")
    first, second = timings.values()
    print(f"  ratio                   {first / second:7.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
