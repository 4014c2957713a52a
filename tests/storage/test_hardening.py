"""Output file modes follow the umask; pandas-edited tables are read when lossless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsan_core.errors import SchemaError
from storage.layout import DataLayout
from storage.tables import read_table, write_table

UMASKS = {"022": 0o644, "002": 0o664, "077": 0o600}

# One process writes every kind of output once per umask, each set in its own folder:
# the umask is process-wide, so it is changed here, not in the test process.
_WRITE_ALL = """
import os, sys
from pathlib import Path
import numpy as np, pandas as pd, torch
from storage.atomic import write_text
from storage.checkpoints import save_checkpoint
from storage.layout import DataLayout
from storage.tables import write_table
from storage.volumes import write_npy
for umask in sys.argv[2:]:
    os.umask(int(umask, 8))
    root = Path(sys.argv[1]) / umask
    write_text(root / "a.txt", "x")
    write_npy(root / "b.npy", np.zeros(3))
    save_checkpoint({"w": torch.zeros(2)}, root / "c.pt")
    write_table(DataLayout(root), "lineage", pd.DataFrame(columns=[
        "run_id", "stage", "key", "cache_hit", "input_hashes", "output_hashes",
        "config_hash", "code_version", "started_at", "ended_at"]))
"""


@pytest.fixture(scope="module")
def written_under_each_umask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("umasks")
    subprocess.run([sys.executable, "-c", _WRITE_ALL, str(root), *UMASKS], check=True)
    return root


@pytest.mark.parametrize(("umask", "mode"), UMASKS.items())
def test_outputs_get_the_mode_the_umask_gives(written_under_each_umask: Path, umask: str,
                                              mode: int) -> None:
    written = [p for p in (written_under_each_umask / umask).rglob("*") if p.is_file()]
    assert len(written) == 4
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(mode)}


def _splits() -> pd.DataFrame:
    return pd.DataFrame({"scan_id": ["X-1", "X-2", "X-3"], "patient_id": ["P-1", "P-2", "P-3"],
                         "set": ["tv", "tv", "test"],
                         "fold": pd.array([0, 1, None], dtype="Int8"), "policy": "date",
                         "seed": 7, "split_version": "v"})


def test_a_table_edited_with_pandas_is_read_when_nothing_is_lost(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    write_table(layout, "splits", _splits())
    edited = pd.read_parquet(layout.table("splits"))
    edited["fold"] = edited["fold"].astype("float64")  # what a quick pandas edit does
    edited.loc[1, "fold"] = 0.0
    edited.to_parquet(layout.table("splits"))  # large_string? index column? both accepted
    back = read_table(layout, "splits")
    assert back["fold"].tolist()[:2] == [0, 0] and pd.isna(back["fold"].iloc[2])
    assert str(back["fold"].dtype) == "Int8"
    table = pq.read_table(layout.table("splits"))
    large = table.set_column(0, "scan_id", table.column("scan_id").cast(pa.large_string()))
    pq.write_table(large, layout.table("splits"))
    assert read_table(layout, "splits")["scan_id"].tolist() == ["X-1", "X-2", "X-3"]


def test_a_value_that_does_not_fit_names_its_column(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    write_table(layout, "splits", _splits())
    edited = pd.read_parquet(layout.table("splits"))
    edited["fold"] = edited["fold"].astype("float64")
    edited.loc[0, "fold"] = 0.5
    edited.to_parquet(layout.table("splits"), index=False)
    with pytest.raises(SchemaError, match="column 'fold' is double, expected int8"):
        read_table(layout, "splits")
    edited.drop(columns="policy").to_parquet(layout.table("splits"), index=False)
    with pytest.raises(SchemaError, match=r"missing columns \['policy'\]"):
        read_table(layout, "splits")
