"""Cached rerun cost: `dsan run` on an unchanged cohort, cold vs cached, each in a new process.

    .venv/bin/python benchmarks/rerun.py [--profile test|demo] [--root DIR] [--keep]

Generates the profile's synthetic cohort (not timed), then times, each as its own
`dsan run` process (the same command a user types): the cold run (empty data root),
the cached rerun (nothing changed), and for scale `dsan --help` (Python and our imports
alone). Prints one JSON line: seconds and the ratio cached / cold (goal <= 0.05), plus
the wall time per stage the cached run printed. Runs on the CPU it is started on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DSAN = [str(Path(sys.executable).parent / "dsan")]
REPO = Path(__file__).resolve().parents[1]


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[1:3])} failed ({done.returncode}):\n"
                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def _stage_rows(output: str) -> dict[str, str]:
    """The 'wall time per stage' table's rows from `dsan run`'s output."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 3 and cells[1].replace(".", "", 1).isdigit():
            rows[cells[0]] = cells[1]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="test", choices=["test", "demo"])
    parser.add_argument("--root", type=Path, help="work folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="dsan-rerun-"))
    env = {**os.environ, "COLUMNS": "120", "DSAN_DATA_ROOT": str(root / "data")}
    try:
        cohort = root / "cohort"
        _timed([*DSAN, "synth", "--profile", args.profile, "--out", str(cohort)], env)
        run = [*DSAN, "run", "--profile", args.profile, "--dicom-root", str(cohort / "dicom"),
               "--labels", str(cohort / "labels.csv"), "--masks", str(cohort / "masks"),
               "--data-root", str(root / "data")]
        cold, _ = _timed(run, env)
        cached, output = _timed(run, env)
        imports, _ = _timed([*DSAN, "--help"], env)
        print(json.dumps({
            "benchmark": "rerun", "profile": args.profile,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_1min": round(os.getloadavg()[0], 2),
            "cold_s": round(cold, 1), "cached_s": round(cached, 1),
            "ratio_cached_over_cold": round(cached / cold, 3), "goal": "<= 0.05",
            "dsan_help_s": round(imports, 1),
            "cached_stage_seconds": _stage_rows(output)}))
    finally:
        if not args.keep and args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
