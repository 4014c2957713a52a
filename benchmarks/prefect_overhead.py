"""What Prefect's engine costs a dsan command, against the baseline in the same run.

    .venv/bin/python benchmarks/prefect_overhead.py [--repeats 2] [--subflows 10]

1. A CLI process on a new data root: the embedded environment, the pipeline's flows
   imported (`flows.pipeline`), then one trivial flow run on the ephemeral API. Each
   repeat starts two fresh processes: Prefect's ephemeral API started by the client
   when the flow runs (the baseline), and started first in a thread
   (`flows.runtime.EphemeralApi`, what `dsan` commands do), so that it boots while the
   flows import. Wall seconds per process, its time to the flow's return.
2. A flow with N trivial subflows in one process: with Prefect's default flow
   heartbeats (each subflow waits for its heartbeat thread when it ends, the baseline),
   and with heartbeats off for the subflows (`flows.runtime.quiet_flow_settings`, what
   the deployments' entry points do).

Prints the device (CPU model) and every measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]

_PROCESS = r"""
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from flows.runtime import EphemeralApi, prefect_environment
prefect_environment(Path(sys.argv[1]))
api = EphemeralApi()
if sys.argv[2] == "early":
    api.start()
import flows.pipeline  # noqa: F401 - the import a `dsan run` pays before its flow
imported = time.perf_counter() - started
from prefect import flow
from flows.runtime import quiet_flow_settings

@flow
def nothing() -> int:
    return 1

api.wait()
with quiet_flow_settings():
    nothing()
print(json.dumps({"imported_s": imported, "flow_done_s": time.perf_counter() - started}))
"""

_SUBFLOWS = r"""
import contextlib, json, sys, time
from pathlib import Path
from flows.runtime import prefect_environment, quiet_flow_settings
prefect_environment(Path(sys.argv[1]))
from prefect import flow

@flow
def stage() -> int:
    return 1

@flow
def parent(n: int, quiet: bool) -> float:
    started = time.perf_counter()
    with quiet_flow_settings() if quiet else contextlib.nullcontext():
        for _ in range(n):
            stage()
    return time.perf_counter() - started

n = int(sys.argv[2])
parent(1, True)  # the API up and the engine warm before anything is timed
print(json.dumps({"heartbeats": parent(n, False), "quiet": parent(n, True)}))
"""


def _python(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--subflows", type=int, default=10)
    args = parser.parse_args()
    print(f"device: {cpu_name()}, Python {platform.python_version()}")

    rows: dict[str, list[dict[str, float]]] = {"client starts the API": [],
                                               "EphemeralApi.start first": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, mode in (("client starts the API", "late"),
                               ("EphemeralApi.start first", "early")):
                root = Path(tmp) / f"{mode}{repeat}"
                rows[name].append(_python(_PROCESS, str(root), mode))
        print("\n1. A new process on a new data root, to the end of its first flow run "
              "(seconds):")
        for name, runs in rows.items():
            done = [r["flow_done_s"] for r in runs]
            imported = [r["imported_s"] for r in runs]
            print(f"  {name:26s} flow done {', '.join(f'{s:5.1f}' for s in done)}"
                  f"   (flows imported at {', '.join(f'{s:4.1f}' for s in imported)})")
        late = sum(r["flow_done_s"] for r in rows["client starts the API"])
        early = sum(r["flow_done_s"] for r in rows["EphemeralApi.start first"])
        print(f"  ratio early / late: {early / late:.2f} ({(late - early) / args.repeats:+.1f} s "
              "per process)")

        timed = _python(_SUBFLOWS, str(Path(tmp) / "subflows"), str(args.subflows))
    print(f"\n2. {args.subflows} trivial subflows in one flow (seconds):")
    print(f"  heartbeats on (Prefect's default): {timed['heartbeats']:5.2f} "
          f"({timed['heartbeats'] / args.subflows:.2f} s per subflow)")
    print(f"  heartbeats off (quiet_flow_settings): {timed['quiet']:5.2f} "
          f"({timed['quiet'] / args.subflows:.2f} s per subflow)")
    print(f"  ratio off / on: {timed['quiet'] / timed['heartbeats']:.2f}")


if __name__ == "__main__":
    main()
