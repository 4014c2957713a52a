"""One writer per data root; a killed holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsan_core.errors import LockedError
from storage.layout import DataLayout
from storage.lock import acquire, data_root_lock, release

_HOLD = """
import sys, time
from storage.layout import DataLayout
from storage.lock import acquire
acquire(DataLayout(sys.argv[1]), command="dsan run")
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"in use by pid {holder.pid} on "
                                              rf"{socket.gethostname()}, started 20.*dsan run"):
            acquire(layout, command="dsan split")
        # A killed run's lock goes with it: the next run takes over at once.
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with data_root_lock(layout, command="dsan split"):
            with data_root_lock(layout, command="a flow inside"):  # reentrant
                pass
    finally:
        if holder.poll() is None:
            holder.kill()
    acquire(layout, command="again")
    release(layout)


def test_the_cli_refuses_while_another_run_holds_the_data_root(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    with data_root_lock(layout, command="dsan run"):
        result = subprocess.run(
            [sys.executable, "-c", "from flows.cli import main; main()", "split", "--profile",
             "test", "--data-root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"the data root is in use by pid {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr and "prefect" not in os.listdir(tmp_path)


def test_a_killed_runs_temp_files_are_removed_by_the_next_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    leftover = tmp_path / "volumes" / ".tmp-abc123.nii.gz"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a volume")
    result = CliRunner().invoke(app, ["split", "--profile", "test", "--data-root",
                                      str(tmp_path)])
    assert result.exit_code == 2  # nothing to split yet; the clean-up ran first
    assert not leftover.exists()
