"""Where should the classifier's trainings run across machines? Dask vs Prefect task workers.

    .venv/bin/python benchmarks/training_dispatch.py [--tasks 40] [--kill-after 2]
        [--wait 60] [--engines dask prefect] [--json-out FILE]

Both engines run on this machine with two worker processes each, on loopback:

- **Dask**: `dask scheduler` + two `dask worker --no-nanny --nthreads 1 --resources
  GPU=1` processes; tasks ask for resources={"GPU": 1} (what `runtime.train_address`
  does);
- **Prefect task workers**: a real `prefect server start` (its own PREFECT_HOME) and two
  processes serving one task with `prefect.task_worker.serve`; tasks go out with
  `.delay()` (Prefect 3's background tasks).

Per engine it measures (1) the round trip of `--tasks` empty tasks submitted at once
(seconds per task, after one warm-up task per worker), and (2) what happens to a task
whose worker is SIGKILLed `--kill-after` seconds into a 10 s run: whether and when it
completes on the other worker (waiting at most `--wait` s). A training is a long task
on a machine that can be lost, so (2) decides; (1) only has to be small against a
training's minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TASK_MODULE = textwrap.dedent('''
    import os
    import time

    from prefect import task


    @task(persist_result=True)
    def job(seconds: float, marker: str) -> int:
        if marker:
            with open(marker, "a") as handle:
                handle.write(f"{os.getpid()}\\n")
        time.sleep(seconds)
        return os.getpid()


    if __name__ == "__main__":
        from prefect.task_worker import serve

        serve(job)
''')


def _job(seconds: float, marker: str) -> int:
    if marker:
        with open(marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_for_pid(marker: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.02)
    raise TimeoutError("the long task never started")


@contextmanager
def dask_cluster(folder: Path) -> Iterator[str]:
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    file = folder / "scheduler.json"
    processes = [_spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                         "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                         "--scheduler-file", str(file)], env, folder / "scheduler.log")]
    try:
        while not file.exists():
            time.sleep(0.05)
        address = json.loads(file.read_text())["address"]
        for name in ("w0", "w1"):
            processes.append(_spawn(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name,
                 "--nthreads", "1", "--no-nanny", "--resources", "GPU=1",
                 "--dashboard-address", ":0", "--local-directory", str(folder / name)],
                env, folder / f"{name}.log"))
        yield address
    finally:
        _stop(processes)


def measure_dask(folder: Path, n_tasks: int, kill_after: float, wait: float) -> dict[str, Any]:
    from distributed import Client

    with dask_cluster(folder) as address, Client(address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        gpu = {"GPU": 1}
        client.gather([client.submit(_job, 0.0, "", pure=False, resources=gpu)
                       for _ in range(2)])
        started = time.perf_counter()
        futures = [client.submit(_job, 0.0, "", pure=False, resources=gpu)
                   for _ in range(n_tasks)]
        client.gather(futures)
        round_trip = (time.perf_counter() - started) / n_tasks
        marker = folder / "long.txt"
        long = client.submit(_job, 10.0, str(marker), pure=False, resources=gpu)
        victim = _wait_for_pid(marker)
        time.sleep(kill_after)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.perf_counter()
        try:
            survivor = long.result(timeout=wait)
            outcome = {"completed": True, "seconds_after_kill": round(
                time.perf_counter() - killed_at, 1), "on_other_worker": survivor != victim,
                "restarts": len(marker.read_text().split()) - 1}
        except Exception as error:  # noqa: BLE001 - the outcome is what is measured
            outcome = {"completed": False, "error": type(error).__name__}
    return {"engine": "dask", "seconds_per_task": round(round_trip, 4), "killed_worker": outcome}


@contextmanager
def prefect_server(folder: Path) -> Iterator[dict[str, str]]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect"), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_LOCAL_STORAGE_PATH": str(folder / "results"),
           "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
           "PREFECT_LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(folder)}
    server = _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], env, folder / "server.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("prefect server did not start") from None
                time.sleep(0.3)
        yield env
    finally:
        _stop([server])


def measure_prefect(folder: Path, n_tasks: int, kill_after: float,
                    wait: float) -> dict[str, Any]:
    (folder / "dispatch_task.py").write_text(TASK_MODULE)
    with prefect_server(folder) as env:
        workers = [_spawn([sys.executable, str(folder / "dispatch_task.py")], env,
                          folder / f"task-worker-{i}.log") for i in range(2)]
        code = textwrap.dedent(f'''
            import json, os, signal, sys, time
            from dispatch_task import job
            marker = {str(folder / "long.txt")!r}
            [f.result(timeout=120) for f in [job.delay(0.0, "") for _ in range(2)]]
            started = time.perf_counter()
            futures = [job.delay(0.0, "") for _ in range({n_tasks})]
            [f.result(timeout=300) for f in futures]
            round_trip = (time.perf_counter() - started) / {n_tasks}
            long = job.delay(10.0, marker)
            deadline = time.monotonic() + 60
            while not (os.path.exists(marker) and open(marker).read().strip()):
                assert time.monotonic() < deadline, "the long task never started"
                time.sleep(0.02)
            victim = int(open(marker).read().split()[0])
            time.sleep({kill_after})
            os.kill(victim, signal.SIGKILL)
            killed_at = time.perf_counter()
            try:
                survivor = long.result(timeout={wait})
                outcome = {{"completed": True, "seconds_after_kill": round(
                    time.perf_counter() - killed_at, 1), "on_other_worker": survivor != victim,
                    "restarts": len(open(marker).read().split()) - 1}}
            except Exception as error:
                outcome = {{"completed": False, "error": type(error).__name__,
                            "state": str(getattr(long, "state", "?"))[:80],
                            "waited_seconds": {wait}}}
            print(json.dumps({{"seconds_per_task": round(round_trip, 4),
                               "killed_worker": outcome}}))
        ''')
        try:
            time.sleep(5)  # the task workers subscribe
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=600, cwd=folder)
        finally:
            _stop(workers)
    if out.returncode != 0:
        return {"engine": "prefect task workers", "error": out.stderr[-800:]}
    return {"engine": "prefect task workers", **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--kill-after", type=float, default=2.0)
    parser.add_argument("--wait", type=float, default=60.0)
    parser.add_argument("--engines", nargs="+", default=["dask", "prefect"],
                        choices=["dask", "prefect"])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    results = []
    for engine in args.engines:
        with tempfile.TemporaryDirectory(prefix=f"dispatch-{engine}-") as folder:
            measure = measure_dask if engine == "dask" else measure_prefect
            result = measure(Path(folder), args.tasks, args.kill_after, args.wait)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(f"machine: {machine}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
