"""`make test` runs on two pytest-xdist workers and relies on `--dist loadgroup` keeping
the tests of one shared chain (tests/conftest.py, SHARED_CHAINS) on one worker, so each
chain is built once. The grouping fails silently when it breaks (pytest 9.2 and
pytest-xdist 3.8: pytest-dev/pytest-xdist#1386, every chain built on both workers), so
this runs a small suite with this repository's hook the way `make test` runs and checks
where its tests ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONFTEST = """
import os
from pathlib import Path

import pytest

from tests.conftest import pytest_collection_modifyitems  # noqa: F401 - the hook under test

@pytest.fixture(scope="session")
def pipeline_root():
    return "built"

@pytest.fixture(scope="session")
def prepared_root():
    return "built"

@pytest.fixture
def record(request):
    yield
    Path("ran").mkdir(exist_ok=True)
    name = request.node.name
    Path("ran", name).write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))
"""

MODULE = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_pipeline_{m}(pipeline_root, record, i):
    pass

@pytest.mark.parametrize("i", range(4))
def test_prepared_{m}(prepared_root, record, i):
    pass

@pytest.mark.parametrize("i", range(6))
def test_alone_{m}(record, i):
    pass
"""


def test_each_shared_chain_runs_on_one_worker(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for m in ("a", "b"):
        (tmp_path / f"test_{m}.py").write_text(MODULE.format(m=m))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = {p.name: p.read_text() for p in (tmp_path / "ran").iterdir()}
    assert len(ran) == 28
    for chain in ("pipeline", "prepared"):
        workers = {w for name, w in ran.items() if name.startswith(f"test_{chain}_")}
        assert len(workers) == 1, f"the {chain} chain ran on {sorted(workers)}"
    # The tests outside a chain are still shared out.
    assert {w for name, w in ran.items() if name.startswith("test_alone_")} == {"gw0", "gw1"}
