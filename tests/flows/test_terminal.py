"""What a person at the terminal sees, and what never leaves the machine or reaches
Prefect's database: run as real `dsan` processes."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.flows.conftest import copy_patients

CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "TF_BUILD")


def _dsan(*args: str) -> list[str]:
    return [sys.executable, "-c", "from flows.cli import main; main()", *args]


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k not in ("DO_NOT_TRACK", *CI_VARIABLES)}
    env["HOME"] = str(home)
    return env


def _in_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdout and stderr."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            process.kill()
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_no_telemetry_and_a_user_error_is_one_line_in_a_terminal(tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "home")
    # Control: a bare `import prefect` in a new terminal session shows Prefect's notice
    # (and would send usage events), so this test can see the difference.
    control = {**env, "PREFECT_HOME": str(tmp_path / "bare-prefect-home")}
    _, bare = _in_terminal([sys.executable, "-c", "import prefect"], control)
    assert "anonymous usage data" in bare
    code, output = _in_terminal(_dsan("split", "--profile", "test", "--data-root",
                                      str(tmp_path / "data")), env)
    assert "anonymous usage data" not in output
    assert code == 2, output
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # the terminal's colours
    lines = [line for line in plain.splitlines() if line.strip()]
    assert lines == ["error: table 'scans' is missing: run the stage that writes it first"], output


@pytest.mark.slow
def test_bad_labels_print_one_line_and_no_raw_path_reaches_prefects_database(
        cohort: Path, tmp_path: Path) -> None:
    # Export folders of real hospitals carry patient names and record numbers.
    export = copy_patients(cohort, tmp_path / "DOE^JANE_MRN0012345", (1, 2))
    bad = tmp_path / "labels-JANE-DOE.csv"
    bad.write_text("a,b\n1,2\n")
    env = _clean_env(tmp_path / "home")
    root = tmp_path / "data"
    common = ["--profile", "test", "--data-root", str(root), "--dicom-root",
              str(export / "dicom")]
    refused = subprocess.run(_dsan("ingest", *common, "--labels", str(bad)), env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    errors = [line for line in refused.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["error: labels manifest lacks required column 'patient_id' "
                      "(found ['a', 'b'])"]
    assert "prefect" not in os.listdir(root)  # refused before Prefect's server

    done = subprocess.run(_dsan("ingest", *common, "--labels", str(export / "labels.csv"),
                                "--masks", str(export / "masks")),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    database = [p for p in (root / "prefect").rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in database)
    blob = b"".join(p.read_bytes() for p in database)
    for secret in ("MRN0012345", "DOE^JANE", "JANE-DOE", str(export)):
        assert secret.encode() not in blob, f"{secret} reached Prefect's files"
    assert b"<redacted>" in blob  # the export's parameters, redacted
    assert b"ingest test 20" in blob  # a readable flow run name: stage, profile, date


def test_a_data_root_that_is_a_file_or_not_writable_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    runner = CliRunner()
    result = runner.invoke(app, ["split", "--profile", "test", "--data-root", str(afile)])
    assert result.exit_code == 2
    assert "expected a folder as the data root (--data-root), found a file" in result.output
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = runner.invoke(app, ["split", "--profile", "test", "--data-root",
                                     str(locked / "data")])
        assert result.exit_code == 2 and "cannot create the data root" in result.output
    finally:
        locked.chmod(0o700)
