"""Cost growth: every stage up to training at 30, 120, 480 and 1,920 scans.

    .venv/bin/python benchmarks/scale.py [--sizes 30 120 480 1920] [--out FILE.json]
        [--root DIR] [--keep] [--synth-workers N] [--dask-workers 1] [--profile-stage S]

Per size: `dsan synth --profile test --patients P` (the test profile's 64x64x40 scans;
P chosen for about that many scans, not timed in the table), then, in a fresh child
process, the pipeline's flows up to pre-processing, called one after the other as
`dsan run --until preprocess` calls them (ingestion, segmentation with the
ground-truth masks, splits and their audit, pre-processing), each timed. The
segmentation flow's tasks are timed one by one (VB-Net training, masks, groups,
figures, evaluation).

Orchestration overhead, measured in the same run: the core science functions the
tasks call (`dsan_core`: header indexing, decoding, mask import, segmentation,
groups, splits, audit, pre-processing, ...) and the volume reads and writes (NIfTI,
.npy, figures) are wrapped with timers where the tasks and workers call them; a
stage's overhead is its wall time minus both, i.e. Prefect, Dask, the stage cache
(keys, manifests, output hashes, the hash memo), lineage and the tables. The Dask
cluster runs `--dask-workers` worker thread(s) in the child process (default 1, so
the core time is not spread over threads and wall minus core is honest; the test
profile itself runs 2).

Peak memory is the RSS of the child's process tree (it, the ephemeral Prefect server,
any Dask worker processes), sampled every 0.1 s by this process, per stage.

Reported per stage: seconds per scan at each size, the growth of the per-scan cost from
the smallest to the largest size, the exponent b of a least-squares fit
cost ~ n^b, the marginal cost per scan between the two largest sizes (fixed costs
cancel), and the overhead per scan. `--profile-stage S` writes cProfiles of stage S
at every size next to the JSON: S.<n>.prof (the flow's thread) and S.<n>.prof.workers
(the functions Dask ran).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
DSAN = [sys.executable, "-c", "from flows.cli import main; main()"]
#: Scans per patient of the test profile's cohort (repeat_fraction 0.3), measured.
SCANS_PER_PATIENT = 1.36
#: Rows of the table, in pipeline order: (stage, what it is).
STAGES = [
    ("ingest", "index headers, choose series, decode, import ground-truth masks, tables"),
    ("train-seg", "VB-Net training (fixed budget: 2 epochs x 2 steps) + validation"),
    ("segment", "masks (method ground_truth) + the infection table"),
    ("groups", "infection ratios -> sampling groups, bins, bands"),
    ("segment-figures", "ratio histogram + 3 overlays"),
    ("segment-eval", "held-out scans: ground truth, classical, VB-Net vs truth"),
    ("split", "patient-level test set + folds"),
    ("audit-splits", "leakage audit and reports"),
    ("preprocess", "resample, scale, pad, window, lung mask; the preprocessed table"),
]

#: Where the tasks and workers call the core science: module -> names.
CORE = {
    "tasks._common.workers": ["index_headers", "decode_series", "preprocess_scan"],
    "tasks.ingest": ["list_export", "plan_ingestion", "ingestion_tables", "read_labels",
                     "conform_mask", "merge_tables"],
    "tasks.segmentation": ["segment_scan", "train_vbnet", "segmentation_partition"],
    "tasks.groups": ["assign_groups"],
    "tasks.segmentation_eval": ["score_held_out_scan", "overlay_figure",
                                "ratio_histogram_figure", "summarise",
                                "evaluation_scans"],
    "tasks.splits": ["make_splits", "audit_splits"],
}
#: Volume and figure reads and writes (the bytes a stage must move in any design).
IO = {
    "tasks._common.workers": ["read_image", "write_image", "write_npy", "write_geometry"],
    "tasks.ingest": ["read_image", "write_image"],
    "tasks.segmentation": ["read_image", "read_array", "write_array"],
    "tasks.segmentation_eval": ["read_image", "read_array", "write_figure"],
}

#: For the breakdown of the overhead: the functions Dask runs per item (their time minus
#: the core and io inside is the worker side's share), and the fan-out itself.
WORKER = {"tasks._common.workers": ["index_chunk", "decode_and_write", "preprocess_and_write"]}
#: Modules that imported a worker function by name (they get the same wrapper, which
#: Dask pickles by reference to tasks._common.workers).
WORKER_USERS = {"index_chunk": "tasks.ingest", "decode_and_write": "tasks.ingest",
                "preprocess_and_write": "tasks.preprocess"}
DASK = {"tasks.ingest": ["map_on_dask"], "tasks._common.contract": ["map_on_dask"]}


# --- the child: one size, flows timed in this process ---------------------------------

class _Clock:
    """Seconds spent inside wrapped functions, per stage and category; nested calls
    count once (the outermost; core and io are one group)."""

    def __init__(self) -> None:
        self.stage = "-"
        self.seconds: dict[str, dict[str, float]] = {}
        self.calls: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._depth = threading.local()
        #: With --profile-stage: a profile of the worker functions (Dask's threads) there.
        self.profile_stage: str | None = None
        self.worker_profile = cProfile.Profile()

    def wrap(self, category: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            # Volume reads inside a core call (a training's loader) count as core.
            group = "science" if category in ("core", "io") else category
            depths = self._depth.__dict__
            depth = depths.get(group, 0)
            depths[group] = depth + 1
            profiled = category == "worker" and self.stage == self.profile_stage
            if profiled:
                self.worker_profile.enable()
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if profiled:
                    self.worker_profile.disable()
                depths[group] = depth
                if depth == 0:
                    spent = time.perf_counter() - started
                    with self._lock:
                        per = self.seconds.setdefault(self.stage, {})
                        per[category] = per.get(category, 0.0) + spent
                        per[f"{category}:{name}"] = per.get(f"{category}:{name}", 0.0) + spent
                        calls = self.calls.setdefault(self.stage, {})
                        calls[name] = calls.get(name, 0) + 1
        return timed

    def install(self) -> None:
        import importlib

        for category, table in (("core", CORE), ("io", IO), ("worker", WORKER),
                                ("dask", DASK)):
            for module_name, names in table.items():
                module = importlib.import_module(module_name)
                for name in names:
                    wrapped = self.wrap(category, name, getattr(module, name))
                    setattr(module, name, wrapped)
                    if category == "worker":
                        setattr(importlib.import_module(WORKER_USERS[name]), name, wrapped)


def _child(args: argparse.Namespace) -> None:
    """Run the flows up to pre-processing on one cohort; write timings as JSON."""
    cohort, root = Path(args.cohort), Path(args.data_root)
    sys.path.insert(0, str(REPO))
    from flows.runtime import prefect_environment

    prefect_environment(root)
    from dsan_core.config import load_profile

    overrides = {"runtime": {"dask": {"n_workers": args.dask_workers, "threads_per_worker": 1,
                                      "processes": False}}}
    config = load_profile(REPO / "profiles" / "test.yaml", overrides)
    clock = _Clock()
    clock.profile_stage = args.profile_stage
    clock.install()
    import flows.segmentation as segmentation_flows
    from flows.ingestion import ingestion_flow
    from flows.preprocessing import preprocess_flow
    from flows.runtime import quiet_flow_settings
    from flows.splits import audit_splits_flow, split_flow
    from storage.inputs import ExportLocation
    from storage.lineage import new_run_id

    stages: dict[str, dict[str, float]] = {}
    profiler = cProfile.Profile() if args.profile_stage else None

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        clock.stage = name
        profiled = profiler is not None and name == args.profile_stage
        if profiled:
            profiler.enable()
        started, wall = time.time(), time.perf_counter()
        try:
            yield
        finally:
            if profiled:
                profiler.disable()
            stages[name] = {"start": started, "end": time.time(),
                            "wall": time.perf_counter() - wall}
            clock.stage = "-"

    def timed_task(name: str, original: Any) -> Callable[..., Any]:
        def run(*a: Any, **k: Any) -> Any:
            with stage(name):
                return original(*a, **k)
        return run

    # The segmentation flow's tasks, one stage each (the flow looks them up at call time).
    for attr, name in (("train_segmenter_task", "train-seg"), ("segment_scans_task", "segment"),
                       ("assign_groups_task", "groups"),
                       ("segmentation_figures_task", "segment-figures"),
                       ("evaluate_segmentation_task", "segment-eval")):
        setattr(segmentation_flows, attr, timed_task(name, getattr(segmentation_flows, attr)))

    export = ExportLocation(dicom_root=cohort / "dicom", labels=cohort / "labels.csv",
                            masks=cohort / "masks")
    run_id = new_run_id()
    flow_walls: dict[str, float] = {}
    with quiet_flow_settings():
        # Start the ephemeral API before the clock runs (a fixed ~5 s per process).
        from prefect import flow

        flow(name="warm-up")(lambda: None)()
        for name, call in (
            ("ingest", lambda: ingestion_flow(export, config.ingest, config.runtime, root,
                                              run_id)),
            ("segmentation-flow", lambda: segmentation_flows.segmentation_flow(
                config.segmentation, config.groups, config.runtime, root, run_id)),
            ("split", lambda: split_flow(config.split, root, run_id=run_id)),
            ("audit-splits", lambda: audit_splits_flow(config.split, root, run_id=run_id)),
            ("preprocess", lambda: preprocess_flow(config.preprocess, config.runtime, root,
                                                   run_id=run_id)),
        ):
            started = time.perf_counter()
            if name == "segmentation-flow":
                result = call()
                n_scans = result.masks.segmented + result.masks.cached
            else:
                with stage(name):
                    result = call()
                if name == "ingest":
                    n_ingested = result.summary.scans
                    n_files = result.summary.files_found
            flow_walls[name] = time.perf_counter() - started
    if profiler is not None:
        profiler.dump_stats(args.prof_out)
        clock.worker_profile.dump_stats(args.prof_out + ".workers")
    Path(args.result).write_text(json.dumps({
        "scans": n_ingested, "segmented": n_scans, "files": n_files, "stages": stages,
        "flows": flow_walls, "seconds": clock.seconds, "calls": clock.calls}))


# --- the parent: cohorts, the child per size, memory, the table -----------------------

def _tree_rss(pid: int) -> int:
    import psutil

    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def _run_child(argv: list[str]) -> tuple[list[tuple[float, int]], float]:
    """Run the child, sampling its tree's RSS; (time, bytes) samples and wall seconds."""
    samples: list[tuple[float, int]] = []
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(child.stdout or []), daemon=True)
    reader.start()
    while child.poll() is None:
        samples.append((time.time(), _tree_rss(child.pid)))
        time.sleep(0.1)
    reader.join()
    if child.returncode != 0:
        sys.exit(f"stages failed ({child.returncode}):\n{''.join(output)[-4000:]}")
    return samples, time.perf_counter() - started


def _synth(cohort: Path, patients: int, workers: int) -> float:
    started = time.perf_counter()
    subprocess.run([*DSAN, "synth", "--profile", "test", "--patients", str(patients),
                    "--workers", str(workers), "--out", str(cohort)], cwd=REPO, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def measure(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    patients = max(2, round(n / SCANS_PER_PATIENT))
    cohort, root, result = work / f"cohort-{n}", work / f"data-{n}", work / f"result-{n}.json"
    shutil.rmtree(root, ignore_errors=True)
    synth_s = _synth(cohort, patients, args.synth_workers) if not cohort.exists() else None
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--cohort", str(cohort),
            "--data-root", str(root), "--result", str(result),
            "--dask-workers", str(args.dask_workers)]
    if args.profile_stage:
        prof = (Path(args.out).parent if args.out else work) / f"{args.profile_stage}.{n}.prof"
        argv += ["--profile-stage", args.profile_stage, "--prof-out", str(prof)]
    samples, child_s = _run_child(argv)
    found = json.loads(result.read_text())
    scans = found["scans"]
    rows = {}
    for name, _ in STAGES:
        span = found["stages"][name]
        peak = max((rss for t, rss in samples if span["start"] - 0.1 <= t <= span["end"] + 0.1),
                   default=0)
        seconds = found["seconds"].get(name, {})
        core, io = seconds.get("core", 0.0), seconds.get("io", 0.0)
        rows[name] = {"wall_s": span["wall"], "core_s": core, "io_s": io,
                      "overhead_s": span["wall"] - core - io,
                      "per_scan_s": span["wall"] / scans,
                      "overhead_per_scan_ms": 1000 * (span["wall"] - core - io) / scans,
                      "peak_rss_mib": peak / 2**20,
                      "detail": {k: round(v, 4) for k, v in seconds.items() if ":" in k},
                      "calls": found["calls"].get(name, {})}
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return {"n_target": n, "patients": patients, "scans": scans, "files": found["files"],
            "synth_s": synth_s, "child_s": child_s, "flows_s": found["flows"],
            "peak_rss_mib": max((rss for _, rss in samples), default=0) / 2**20,
            "stages": rows}


def _fit_exponent(ns: list[int], costs: list[float]) -> float | None:
    points = [(math.log(n), math.log(c)) for n, c in zip(ns, costs, strict=True) if c > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def summarise(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    ns = [s["scans"] for s in sizes]
    summary = {}
    for name, _ in STAGES:
        walls = [s["stages"][name]["wall_s"] for s in sizes]
        per_scan = [w / n for w, n in zip(walls, ns, strict=True)]
        marginal = ((walls[-1] - walls[-2]) / (ns[-1] - ns[-2])
                    if len(ns) > 1 and ns[-1] != ns[-2] else None)
        summary[name] = {
            "per_scan_s": per_scan, "growth_first_to_last": per_scan[-1] / per_scan[0],
            "exponent_b": _fit_exponent(ns, walls), "marginal_s_per_scan_last": marginal,
            "overhead_per_scan_ms": [s["stages"][name]["overhead_per_scan_ms"] for s in sizes],
            "peak_rss_mib": [s["stages"][name]["peak_rss_mib"] for s in sizes]}
    totals = [sum(s["stages"][name]["wall_s"] for name, _ in STAGES) for s in sizes]
    overheads = [sum(s["stages"][name]["overhead_s"] for name, _ in STAGES) for s in sizes]
    summary["all stages"] = {
        "per_scan_s": [t / n for t, n in zip(totals, ns, strict=True)],
        "growth_first_to_last": (totals[-1] / ns[-1]) / (totals[0] / ns[0]),
        "exponent_b": _fit_exponent(ns, totals),
        "marginal_s_per_scan_last": ((totals[-1] - totals[-2]) / (ns[-1] - ns[-2])
                                     if len(ns) > 1 and ns[-1] != ns[-2] else None),
        "overhead_per_scan_ms": [1000 * o / n for o, n in zip(overheads, ns, strict=True)],
        "peak_rss_mib": [s["peak_rss_mib"] for s in sizes]}
    return summary


def _print_table(sizes: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    ns = [s["scans"] for s in sizes]
    head = ("stage", *[f"{n} scans s/scan" for n in ns], "growth", "b", "marginal s/scan",
            *[f"overhead ms/scan @{n}" for n in ns], *[f"peak MiB @{n}" for n in ns])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, row in summary.items():
        b = row["exponent_b"]
        m = row["marginal_s_per_scan_last"]
        cells = [name, *[f"{v:.4f}" for v in row["per_scan_s"]],
                 f"{row['growth_first_to_last']:.2f}x", f"{b:.2f}" if b is not None else "-",
                 f"{m:.4f}" if m is not None else "-",
                 *[f"{v:.1f}" for v in row["overhead_per_scan_ms"]],
                 *[f"{v:.0f}" for v in row["peak_rss_mib"]]]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 120, 480, 1920])
    parser.add_argument("--out", help="write everything measured as JSON here")
    parser.add_argument("--root", type=Path, help="work folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep cohorts and data roots")
    parser.add_argument("--synth-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dask-workers", type=int, default=1)
    parser.add_argument("--profile-stage", choices=[name for name, _ in STAGES])
    # The child's arguments.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cohort", help=argparse.SUPPRESS)
    parser.add_argument("--data-root", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--prof-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    work = args.root or Path(tempfile.mkdtemp(prefix="dsan-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = []
    try:
        for n in sorted(args.sizes):
            sizes.append(measure(n, work, args))
            print(f"{n}: {sizes[-1]['scans']} scans, {sizes[-1]['child_s']:.0f} s, load "
                  f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    finally:
        if not args.keep and args.root is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(sizes)
    report = {"benchmark": "scale", "cpu": cpu_name(), "cores": os.cpu_count(),
              "load_average_1min_end": round(os.getloadavg()[0], 2),
              "dask_workers": args.dask_workers, "sizes": sizes, "summary": summary}
    _print_table(sizes, summary)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
