"""Benchmark: the pre-processing worker function over many scans, serial vs Dask.

Generates `--n-scans` demo-size phantoms (HU NIfTI + lung/infection masks, like the
ingestion and segmentation stages leave them) once under `--root`, then times
`tasks._common.workers.preprocess_and_write` over all of them (read NIfTI, pre-process,
write the four outputs, hash them), each mode in a fresh subprocess:

    serial      plain loop in one process, torch/SimpleITK at 1 thread
    serial-2t   the same loop with torch/SimpleITK at 2 threads (intra-scan threads)
    processes   Dask LocalCluster, 2 worker processes x 1 thread (via map_on_dask)
    threads     Dask LocalCluster, 1 in-process worker x 2 threads (via map_on_dask)

Cluster start-up and the workers' first imports are timed apart from the map.
Peak RSS per worker is getrusage's max RSS of each worker process (pids found with
client.run; psutil gives the current RSS beside it); for serial modes, the process.

    python benchmarks/preprocess_dask.py [--profile demo|paper] [--n-scans 60]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsan_core.config import PreprocessConfig, load_profile  # noqa: E402

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
MODES = ("serial", "serial-2t", "processes", "threads")


def generate(root: Path, n_scans: int, shape: tuple[int, int, int]) -> list[tuple[str, ...]]:
    """Write the phantoms once (skipped when `root` already holds them)."""
    import SimpleITK as sitk

    from dsan_core.synthetic import make_phantom
    from storage.layout import DataLayout
    from storage.volumes import write_image

    layout = DataLayout(root)
    spacing = (360.0 / shape[2], 360.0 / shape[1], 1.25)  # the demo cohort's geometry
    scans = []
    for i in range(n_scans):
        scan_id = f"bench-{i:03d}"
        paths = (layout.volume(scan_id), layout.mask("bench", scan_id, "lung"),
                 layout.mask("bench", scan_id, "infection"))
        if not all(p.exists() for p in paths):
            phantom = make_phantom(shape, spacing, np.random.default_rng(i),
                                   diagnosis="COVID" if i % 2 else "CAP",
                                   target_ratio=float(np.random.default_rng(i).uniform(0, 0.1)))
            for path, array in zip(paths, (phantom.hu, phantom.lung, phantom.infection),
                                   strict=True):
                image = sitk.GetImageFromArray(array)
                image.SetSpacing(spacing)
                write_image(image, path)
        scans.append((scan_id, *(str(p) for p in paths)))
    return scans


def _items(scans: list[tuple[str, ...]], out: Path, config: PreprocessConfig,
           threads: int) -> list[tuple[Any, ...]]:
    items = []
    for scan_id, volume, lung, infection in scans:
        destinations = {name: str(out / scan_id / (name + (".json" if name == "geometry"
                                                           else ".npy")))
                        for name in ("input", "lung", "infection", "geometry")}
        items.append((volume, lung, infection, destinations, scan_id, config, threads))
    return items


def _peak_rss_mib() -> tuple[int, float, float]:
    import psutil

    current = psutil.Process().memory_info().rss / 2**20
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current


def run_mode(mode: str, scans: list[tuple[str, ...]], config: PreprocessConfig,
             workers: int) -> dict[str, Any]:
    """Time one mode in this process; returns seconds, failures and peak RSS."""
    from tasks._common.workers import preprocess_and_write

    out = Path(tempfile.mkdtemp(prefix=f"out-{mode}-"))
    try:
        if mode.startswith("serial"):
            items = _items(scans, out, config, threads=2 if mode == "serial-2t" else 1)
            start = time.perf_counter()
            results = []
            for item in items:
                try:
                    results.append(preprocess_and_write(*item))
                except Exception as error:  # noqa: BLE001 - counted like map_on_dask does
                    results.append(error)
            seconds = time.perf_counter() - start
            pid, peak, current = _peak_rss_mib()
            return {"mode": mode, "seconds": seconds, "startup": 0.0,
                    "failed": sum(isinstance(r, BaseException) for r in results),
                    "workers": [{"pid": pid, "peak_rss_mib": peak, "rss_mib": current}]}
        return _run_dask(mode, scans, config, workers, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _run_dask(mode: str, scans: list[tuple[str, ...]], config: PreprocessConfig, workers: int,
              out: Path) -> dict[str, Any]:
    import importlib
    import logging

    from distributed import Client, LocalCluster

    from tasks._common.dask_map import map_on_dask
    from tasks._common.workers import preprocess_and_write

    start = time.perf_counter()
    processes = mode == "processes"
    network = {"host": "127.0.0.1"} if processes else {}
    cluster = LocalCluster(n_workers=workers if processes else 1,
                           threads_per_worker=1 if processes else workers,
                           processes=processes, dashboard_address=None,
                           silence_logs=logging.WARNING, **network)
    with cluster, Client(cluster) as client:
        client.run(importlib.import_module, "tasks.preprocess")  # workers' first imports
        startup = time.perf_counter() - start
        start = time.perf_counter()
        results = map_on_dask(cluster.scheduler_address, preprocess_and_write,
                              _items(scans, out, config, threads=1),
                              description=f"pre-processing ({mode})")
        seconds = time.perf_counter() - start
        rss = client.run(_peak_rss_mib)
    return {"mode": mode, "seconds": seconds, "startup": startup,
            "failed": sum(isinstance(r, BaseException) for r in results),
            "workers": [{"pid": pid, "peak_rss_mib": peak, "rss_mib": current}
                        for pid, peak, current in rss.values()]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Dask pre-processing benchmark")
    parser.add_argument("--profile", default="demo", help="demo | paper | a YAML path")
    parser.add_argument("--n-scans", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128),
                        metavar=("Z", "Y", "X"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many per mode")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--root", type=Path, default=None,
                        help="where the phantoms are written once (default: a temp folder)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: one mode, JSON out
    args = parser.parse_args()
    path = Path(args.profile)
    profile = path if path.suffix in {".yaml", ".yml"} else PROFILES / f"{args.profile}.yaml"
    config = load_profile(profile).preprocess
    shape = tuple(args.shape)
    root = args.root or Path(tempfile.gettempdir()) / (
        f"dsan-bench-preprocess-{args.n_scans}x{'x'.join(map(str, shape))}")
    if args.only:
        scans = generate(root, args.n_scans, shape)  # type: ignore[arg-type]
        print(json.dumps(run_mode(args.only, scans, config, args.workers)))
        return

    start = time.perf_counter()
    generate(root, args.n_scans, shape)  # type: ignore[arg-type]
    print(f"{args.n_scans} phantoms {shape} (z, y, x) int16 under {root} "
          f"({time.perf_counter() - start:.1f} s to write or find)")
    print(f"profile {profile.stem}: target {config.target_shape}, scale {config.scale}, "
          f"dtype {config.dtype}; cpus {os.cpu_count()}, load average "
          f"{tuple(round(v, 2) for v in os.getloadavg())}")
    best: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        for _ in range(args.repeats):
            command = [sys.executable, __file__, "--only", mode, "--profile", args.profile,
                       "--n-scans", str(args.n_scans), "--workers", str(args.workers),
                       "--root", str(root), "--shape", *map(str, shape)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if mode not in best or result["seconds"] < best[mode]["seconds"]:
                best[mode] = result
    serial = best.get("serial", {}).get("seconds")
    print(f"\nbest of {args.repeats}; seconds for {args.n_scans} scans (start-up apart)")
    print(f"{'mode':<10} {'seconds':>8} {'s/scan':>7} {'speed-up':>9} {'start-up':>9} "
          f"{'failed':>6}  peak RSS per worker (MiB)")
    for mode, result in best.items():
        ratio = f"{serial / result['seconds']:.2f}x" if serial else "-"
        peaks = ", ".join(f"{w['peak_rss_mib']:.0f}" for w in result["workers"])
        print(f"{mode:<10} {result['seconds']:8.2f} {result['seconds'] / args.n_scans:7.3f} "
              f"{ratio:>9} {result['startup']:8.1f}s {result['failed']:6d}  {peaks}")
    print(f"load average after: {tuple(round(v, 2) for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
