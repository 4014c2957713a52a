"""Dask workers import `tasks._common.workers` only; it must not pull in Prefect."""

from __future__ import annotations

import subprocess
import sys


def test_worker_module_does_not_import_prefect() -> None:
    code = "import sys, tasks._common.workers; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
