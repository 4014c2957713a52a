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

from tests.conftest import SHARED_CHAINS

REPO = Path(__file__).resolve().parents[1]

# One stand-in session fixture per chain, named like the chain's first real fixture
# (sorted), so the grouping is checked against SHARED_CHAINS as it stands.
CHAIN_FIXTURE = {chain: sorted(fixtures)[0] for chain, fixtures in SHARED_CHAINS.items()}

CONFTEST = """
import os
from pathlib import Path

import pytest

from tests.conftest import pytest_collection_modifyitems  # noqa: F401 - the hook under test

@pytest.fixture
def record(request):
    yield
    Path("ran").mkdir(exist_ok=True)
    Path("ran", request.node.name).write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))
""" + "".join(f"""
@pytest.fixture(scope="session")
def {fixture}():
    return "built"
""" for fixture in CHAIN_FIXTURE.values())

# The tests outside a chain take a moment each, so that one worker cannot run them all
# while the other is still on its chains' (instant) tests: whether both workers get
# some is then up to the scheduler, not to which worker started first (it failed
# once, with instant tests, on a loaded machine).
MODULE = "import time\n\nimport pytest\n" + "".join(f"""
@pytest.mark.parametrize("i", range(4))
def test_{chain}_{{m}}({fixture}, record, i):
    pass
""" for chain, fixture in CHAIN_FIXTURE.items()) + """
@pytest.mark.parametrize("i", range(6))
def test_alone_{m}(record, i):
    time.sleep(0.5)
"""


def test_each_shared_chain_runs_on_one_worker(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for m in ("a", "b"):
        (tmp_path / f"test_{m}.py").write_text(MODULE.format(m=m))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
         "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = {p.name: p.read_text() for p in (tmp_path / "ran").iterdir()}
    assert len(ran) == 2 * (4 * len(CHAIN_FIXTURE) + 6)
    for chain in CHAIN_FIXTURE:
        workers = {w for name, w in ran.items() if name.startswith(f"test_{chain}_")}
        assert len(workers) == 1, f"the {chain} chain ran on {sorted(workers)}"
    # The tests outside a chain are still shared out.
    assert {w for name, w in ran.items() if name.startswith("test_alone_")} == {"gw0", "gw1"}
