"""The deployments against a real Prefect server: `dsan server` on a free loopback port with
its SQLite database under a temporary data root, the work pool, `prefect deploy` of
deployments/prefect.yaml, a process worker, then the pipeline and a retraining triggered
by deployment; `dsan serve` and `dsan ui` on the same database. Every process started here
runs in its own session and is stopped by its process group, also on failure.

The data root starts as a copy of the session's finished pipeline (`pipeline_root`, on the
same cohort), so the pipeline deployment finds every stage cached and the retraining on
the drop is the one computation here; what a retraining promises (known patients keep their
place, the champion / challenger gate, people overruling it) is checked on that run. The
runs happen once per module (fixtures
`pipeline_run`, `retrain_run`) and the tests assert on what they saw then; what needs the
pool's deployments deploys them again where `dsan serve` replaced them (`in_the_pool`): any
test passes alone or in any order.

Each process gets an environment with PREFECT_API_URL at the test server, telemetry off,
and PREFECT_HOME, HOME and caches in temporary folders, so nothing is written elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import flows.cli.orchestration  # noqa: F401 - registers its commands (until COMMAND_GROUPS does)
from flows.cli import app
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.lock import release
from storage.tables import read_table, table_exists
from tests.conftest import PROFILES, environment

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DSAN = [sys.executable, "-c",
        "import flows.cli.orchestration; from flows.cli import app; app(prog_name='dsan')"]
PREFECT = [sys.executable, "-m", "prefect"]
RUN_TIMEOUT = 420.0  # seconds a flow run may take (the test profile needs ~40 s here)
DEPLOYMENTS = ("dsan-pipeline/dsan-pipeline", "dsan-retrain/dsan-retrain")
POOL = "dsan-cpu"  # the process pool of deployments/prefect.yaml


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Processes:
    """Processes started by this test, each in its own session (so its children go with
    it), with its output in a log file."""

    logs: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)

    def start(self, name: str, argv: list[str], env: dict[str, str],
              cwd: Path) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=cwd, start_new_session=True)
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGINT (Ctrl-C, the stop the README gives for the server and `dsan serve`) to
        its process group, SIGTERM and then SIGKILL after grace periods; then SIGKILL to
        whatever the group still holds (a flow run a worker started, say)."""
        if process.pid in self.stopped:
            return
        self.stopped.add(process.pid)
        for sent, grace in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0),
                            (signal.SIGKILL, 10.0)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.killpg(process.pid, sent)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):  # nothing left: the usual case
            os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):  # workers before the server
            self.stop(process)

    def tail(self, lines: int = 60) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)


@dataclass
class Stack:
    url: str
    root: Path
    cohort: Path
    drop: Path
    env: dict[str, str]
    processes: Processes

    def prefect(self, *args: str, cwd: Path = REPO) -> str:
        done = subprocess.run([*PREFECT, *args], env=self.env, cwd=cwd, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.url)

    def run_deployment(self, name: str, parameters: dict[str, str] | None = None,
                       timeout: float = RUN_TIMEOUT) -> Any:
        """Trigger deployment `name` (flow/deployment) and wait for a final state."""
        with self.client() as client:
            deployment = client.read_deployment_by_name(name)
            run = client.create_flow_run_from_deployment(deployment.id,
                                                         parameters=parameters or {})
            deadline = time.monotonic() + timeout
            while True:
                run = client.read_flow_run(run.id)
                if run.state is not None and run.state.is_final():
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not finish within {timeout:.0f} s (state "
                                f"{run.state and run.state.name}):\n{self.processes.tail()}")
                time.sleep(0.5)
        assert run.state.is_completed(), (f"{name} ended {run.state.name}: "
                                          f"{run.state.message}\n{self.processes.tail()}")
        return run


def clean_environment(tmp: Path, url: str) -> dict[str, str]:
    """The caller's environment without Prefect or dsan settings, plus the test server's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "DSAN_"))}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update({
        "PREFECT_API_URL": url,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(tmp / "prefect-client"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
        # Poll every second: the defaults (10 s) would only make the test slower.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
    })
    return env


def wait_until_up(url: str, process: subprocess.Popen[bytes], processes: Processes) -> None:
    from flows.cli.orchestration import server_answers

    deadline = time.monotonic() + 120
    while not server_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no server at {url} (exit code {process.poll()}):\n"
                        f"{processes.tail()}")
        time.sleep(0.5)


def in_the_pool(stack: Stack) -> None:
    """prefect.yaml's deployments in the work pool POOL: `prefect deploy` where they
    are missing or `dsan serve` registered its own of the same names (deleted first)."""
    from prefect.exceptions import ObjectNotFound

    with stack.client() as client:
        found = []
        for name in DEPLOYMENTS:
            with contextlib.suppress(ObjectNotFound):  # none of that name
                found.append(client.read_deployment_by_name(name))
        if [d.work_pool_name for d in found] == [POOL] * len(DEPLOYMENTS):
            return
        for deployment in found:
            client.delete_deployment(deployment.id)
    stack.prefect("--no-prompt", "deploy", "--all", "--prefect-file",
                  "deployments/prefect.yaml")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_config, cohort: Path,  # type: ignore[no-untyped-def]
          drop: Path, pipeline_root: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("server")
    root = tmp / "data"
    shutil.copytree(pipeline_root, root)
    shutil.rmtree(root / "prefect", ignore_errors=True)  # the database is the server's own
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    logs = tmp / "logs"
    logs.mkdir()
    processes = Processes(logs)
    env = clean_environment(tmp, url)
    # What a team exports before `prefect deploy` (deployments/prefect.yaml).
    env.update({"DSAN_PROFILE": str(PROFILES / "test.yaml"), "DSAN_DATA_ROOT": str(root),
                "DSAN_DROP_DICOM_ROOT": str(drop / "dicom"),
                "DSAN_DROP_LABELS": str(drop / "labels.csv")})
    stack = Stack(url, root, cohort, drop, env, processes)
    try:
        server = processes.start("server", [*DSAN, "server", "--port", str(port),
                                            "--data-root", str(root)], env, tmp)
        wait_until_up(url, server, processes)
        stack.prefect("work-pool", "create", POOL, "--type", "process")
        stack.prefect("work-pool", "set-concurrency-limit", POOL, "1")
        # The test process's own Prefect client (imported here at the latest) keeps its
        # home in tmp too.
        with environment(PREFECT_HOME=str(tmp / "prefect-client"), DO_NOT_TRACK="1",
                         PREFECT_SERVER_ANALYTICS_ENABLED="false"):
            import prefect.client.orchestration  # noqa: F401
        in_the_pool(stack)
        processes.start("worker", [*PREFECT, "worker", "start", "--pool", POOL,
                                   "--name", "test-worker"], env, tmp)
        yield stack
    finally:
        processes.stop_all()


@dataclass(frozen=True)
class Tables:
    """What a deployment's run left in the data root, read as soon as it finished."""

    models: pd.DataFrame
    scans: pd.DataFrame
    splits: pd.DataFrame
    predictions: pd.DataFrame
    decisions: pd.DataFrame | None
    lineage: pd.DataFrame


def read_tables(root: Path) -> Tables:
    layout = DataLayout(root)
    decisions = (read_table(layout, "model_decisions")
                 if table_exists(layout, "model_decisions") else None)
    return Tables(read_table(layout, "models"), read_table(layout, "scans"),
                  read_table(layout, "splits"), read_table(layout, "predictions"), decisions,
                  read_lineage(layout))


@dataclass(frozen=True)
class DeploymentRun:
    run: Any
    before: Tables
    after: Tables

    def new_lineage(self) -> pd.DataFrame:
        """The lineage rows this run wrote (its dsan run ids are new to the data root)."""
        new = set(self.after.lineage["run_id"]) - set(self.before.lineage["run_id"])
        return self.after.lineage[self.after.lineage["run_id"].isin(new)]


@pytest.fixture(scope="module")
def pipeline_run(stack: Stack) -> DeploymentRun:
    cohort = stack.cohort
    in_the_pool(stack)
    before = read_tables(stack.root)
    run = stack.run_deployment("dsan-pipeline/dsan-pipeline", {
        "dicom_root": str(cohort / "dicom"), "labels": str(cohort / "labels.csv"),
        "masks": str(cohort / "masks")})
    return DeploymentRun(run, before, read_tables(stack.root))


@pytest.fixture(scope="module")
def retrain_run(stack: Stack, pipeline_run: DeploymentRun) -> DeploymentRun:
    # The test profile segments with ground-truth masks: the drop's come with this run.
    in_the_pool(stack)
    before = read_tables(stack.root)
    run = stack.run_deployment("dsan-retrain/dsan-retrain", {"masks": str(stack.drop / "masks")})
    return DeploymentRun(run, before, read_tables(stack.root))


def test_server_prints_the_api_url_and_keeps_its_database_under_the_data_root(
        stack: Stack) -> None:
    output = (stack.processes.logs / "server.log").read_text()
    assert f"export PREFECT_API_URL={stack.url}" in output
    assert (stack.root / "prefect" / "prefect.db").is_file()


def test_deployments_are_registered_from_prefect_yaml(stack: Stack) -> None:
    in_the_pool(stack)
    with stack.client() as client:
        retrain = client.read_deployment_by_name("dsan-retrain/dsan-retrain")
        pipeline = client.read_deployment_by_name("dsan-pipeline/dsan-pipeline")
    assert retrain.work_pool_name == pipeline.work_pool_name == POOL
    assert [s.schedule.cron for s in retrain.schedules] == ["0 3 * * 0"]
    assert retrain.parameters == {"profile": str(PROFILES / "test.yaml"),
                                  "data_root": str(stack.root),
                                  "dicom_root": str(stack.drop / "dicom"),
                                  "labels": str(stack.drop / "labels.csv")}
    assert pipeline.parameters == {"profile": str(PROFILES / "test.yaml"),
                                   "data_root": str(stack.root)}
    assert retrain.job_variables["env"]["DO_NOT_TRACK"] == "1"


def test_pipeline_deployment_runs_on_a_worker(stack: Stack,
                                              pipeline_run: DeploymentRun) -> None:
    after = pipeline_run.after
    assert after.models["status"].tolist() == ["promoted"]
    assert table_exists(DataLayout(stack.root), "predictions") and len(after.predictions) > 0
    # The worker's run went through every stage on this data root, all of them cached
    # (the root is a copy of the session's finished pipeline on the same cohort).
    rows = pipeline_run.new_lineage()
    assert rows["run_id"].nunique() == 1, rows[["run_id", "stage"]].to_string()
    assert {"ingest", "train-seg", "segment", "split", "preprocess", "train", "ensemble",
            "evaluate"} <= set(rows["stage"]), sorted(set(rows["stage"]))
    assert rows["cache_hit"].all(), rows[["stage", "cache_hit"]].to_string()


def test_retrain_deployment_adds_the_drop_and_records_a_decision(
        retrain_run: DeploymentRun) -> None:
    before, after = retrain_run.before, retrain_run.after
    models = after.models
    assert len(models) == len(before.models) + 1
    assert len(after.scans) > len(before.scans)
    challenger = (set(models["model_id"]) - set(before.models["model_id"])).pop()
    decisions = after.decisions
    assert decisions is not None
    assert decisions[decisions["model_id"] == challenger]["actor"].tolist() == ["gate"]


def _dsan(layout: DataLayout, *args: str) -> Any:
    """A dsan command in this process. It keeps the data root locked for the life of the
    process, as a command does: released here, for the deployments' runs that follow."""
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        release(layout)


def test_retrain_gate_promote_and_rollback(stack: Stack, retrain_run: DeploymentRun) -> None:
    """What a retraining promises, on the deployment's run: the data root grows, known
    patients stay where they were, the new ensemble meets the champion / challenger gate,
    and people can overrule it (`dsan promote`, `dsan rollback`), all on the record."""
    before, after = retrain_run.before, retrain_run.after
    old, new = (t.splits.set_index("scan_id") for t in (before, after))
    assert len(new) > len(old)
    kept = new.loc[old.index]
    assert (kept["set"] == old["set"]).all()
    assert (kept["fold"].fillna(-1) == old["fold"].fillna(-1)).all()
    worker_log = (stack.processes.logs / "worker.log").read_text()
    assert f"added to {len(old)} scans of earlier drops" in worker_log

    assert before.models["status"].tolist() == ["promoted"]  # the data root's first ensemble
    champion = before.models["model_id"].iloc[0]
    models = after.models.set_index("model_id")
    challenger = (set(models.index) - {champion}).pop()
    assert after.decisions is not None
    gate = after.decisions[after.decisions["model_id"] == challenger].iloc[-1]
    assert gate["actor"] == "gate" and gate["champion_id"] == champion
    assert '"auc"' in gate["numbers"] and gate["n_scans"] > 0
    promoted = models.index[models["status"] == "promoted"].tolist()
    assert promoted == [challenger if gate["action"] == "promote" else champion]

    # People overrule the gate; both are recorded. (No run is under way now: the module's
    # runs end before their fixtures return, and `dsan serve` stops with its test.)
    layout = DataLayout(stack.root)
    root = str(layout.root)
    common = ["--profile", str(PROFILES / "test.yaml"), "--data-root", root]
    current = read_table(layout, "models").set_index("model_id")
    serving = current.index[current["status"] == "promoted"].tolist()
    other = champion if serving == [challenger] else challenger
    result_promote = _dsan(layout, "promote", other[:8], "--reason", "radiologist", *common)
    assert result_promote.exit_code == 0, result_promote.output
    assert read_table(layout, "models").set_index("model_id").loc[other, "status"] == "promoted"
    back = _dsan(layout, "rollback", *common)
    assert back.exit_code == 0 and f"to {serving[0]}" in back.output, back.output
    actions = read_table(layout, "model_decisions")["action"].tolist()
    assert actions[-2:] == ["promote", "rollback"]
    listing = _dsan(layout, "models", "--data-root", root)
    assert "radiologist" in listing.output and "promoted" in listing.output
    lineage = _dsan(layout, "lineage", challenger, "--data-root", root)
    assert lineage.exit_code == 0, lineage.output
    assert "split version" in lineage.output and "volume sha256" in lineage.output
    via_report = _dsan(layout, "lineage", "reports/evaluation/report.md", "--data-root", root)
    assert f"model {challenger}" in via_report.output


def test_serve_takes_over_the_deployments_and_runs_them(
        stack: Stack, retrain_run: DeploymentRun) -> None:
    # After the module's retraining (retrain_run), as when it ran in file order: the
    # served retraining finds the drop already in the data root.
    serve = [*DSAN, "serve", "--cron", "15 4 * * 1", "--profile", str(PROFILES / "test.yaml"),
             "--data-root", str(stack.root), "--dicom-root", str(stack.drop / "dicom"),
             "--labels", str(stack.drop / "labels.csv"), "--masks", str(stack.drop / "masks")]
    # prefect.yaml's deployments (same names) belong to the pool's workers: refused.
    refused = subprocess.run(serve, env=stack.env, cwd=stack.root.parent, capture_output=True,
                             text=True, timeout=180)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "prefect deployment delete dsan-retrain/dsan-retrain" in refused.stderr
    stack.prefect("deployment", "delete", "dsan-retrain/dsan-retrain")
    stack.prefect("deployment", "delete", "dsan-pipeline/dsan-pipeline")

    served_by = stack.processes.start("serve", serve, stack.env, stack.root.parent)
    try:
        deadline = time.monotonic() + 120
        with stack.client() as client:
            while True:
                served = {d.name: d for d in client.read_deployments()}
                if {"dsan-retrain", "dsan-pipeline"} <= set(served):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"dsan serve did not register:\n{stack.processes.tail()}")
                time.sleep(0.5)
        retrain, pipeline = served["dsan-retrain"], served["dsan-pipeline"]
        assert retrain.work_pool_name is None and pipeline.work_pool_name is None
        assert [(s.schedule.cron, s.active) for s in retrain.schedules] == [("15 4 * * 1",
                                                                             True)]
        assert retrain.parameters == {"profile": str(PROFILES / "test.yaml"),
                                      "data_root": str(stack.root),
                                      "dicom_root": str(stack.drop / "dicom"),
                                      "labels": str(stack.drop / "labels.csv"),
                                      "masks": str(stack.drop / "masks")}
        # The serving process runs it (no worker polls a pool for it).
        stack.run_deployment("dsan-retrain/dsan-retrain")
        assert "serving on" in (stack.processes.logs / "serve.log").read_text()
    finally:
        # The tests that need the pool's deployments deploy them again (`in_the_pool`).
        stack.processes.stop(served_by)


def test_ui_serves_the_data_roots_past_runs(stack: Stack, pipeline_run: DeploymentRun) -> None:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**stack.env, "PREFECT_API_URL": url}
    ui = stack.processes.start("ui", [*DSAN, "ui", "--port", str(port), "--data-root",
                                      str(stack.root)], env, stack.root.parent)
    try:
        wait_until_up(url, ui, stack.processes)
        runs = httpx.post(f"{url}/flow_runs/filter", json={
            "flows": {"name": {"any_": ["dsan-pipeline"]}}}, timeout=30).json()
        assert [r["state_type"] for r in runs].count("COMPLETED") >= 1
    finally:
        stack.processes.stop(ui)


def test_serve_refuses_without_a_server(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["serve", "--profile", "test", "--data-root",
                                      str(tmp_path)])
    assert result.exit_code == 2
    assert "dsan serve needs a Prefect server" in result.output
    assert "dsan server --data-root" in result.output


def test_ui_refuses_without_a_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ui", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "no Prefect database" in result.output


def test_server_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["server", "--port", str(port), "--data-root",
                                          str(tmp_path)])
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in result.output
