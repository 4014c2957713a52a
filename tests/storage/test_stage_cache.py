from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from dsan_core.errors import SchemaError
from storage.atomic import atomic_path, clean_temp_files, write_text
from storage.hashing import FileHashMemo, sha256_file, stat_key
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.stage_cache import Manifest, StageCache, artifact, stage_key
from storage.tables import read_table, write_table
from tasks._common.contract import StageInputs, StageRun, cached_stage


def test_stage_key_depends_on_content_not_paths() -> None:
    base = stage_key("s", "1", "cfg", {"a": "h1", "b": "h2"})
    assert base == stage_key("s", "1", "cfg", {"b": "h2", "a": "h1"})
    assert base != stage_key("s", "1", "cfg", {"a": "h1", "b": "h3"})
    assert base != stage_key("s", "2", "cfg", {"a": "h1", "b": "h2"})
    assert base != stage_key("s", "1", "cfg2", {"a": "h1", "b": "h2"})


def test_same_content_under_two_paths_gives_the_same_hash(tmp_path: Path) -> None:
    one, two = tmp_path / "one.bin", tmp_path / "sub" / "two.bin"
    two.parent.mkdir()
    one.write_bytes(b"abc")
    two.write_bytes(b"abc")
    memo = FileHashMemo(tmp_path / "memo.parquet")
    assert memo.hash_file(one) == memo.hash_file(two) == sha256_file(one)
    assert stat_key(one) != stat_key(two)


def test_memo_notices_changed_content_and_persists(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"first")
    memo = FileHashMemo(tmp_path / "memo.parquet")
    first = memo.hash_file(target)
    time.sleep(0.01)
    target.write_bytes(b"second!")
    os.utime(target, ns=(time.time_ns(), time.time_ns()))
    second = memo.hash_file(target)
    assert first != second
    memo.save()
    reloaded = FileHashMemo(tmp_path / "memo.parquet")
    assert reloaded.lookup(stat_key(target)) == second
    assert str(tmp_path) not in (tmp_path / "memo.parquet").read_bytes().decode("latin-1")


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    destination = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(destination) as temp:
        temp.write_text("partial")
        raise RuntimeError("killed")
    assert not destination.exists()
    assert list(tmp_path.iterdir()) == []
    write_text(destination, "whole")
    assert destination.read_text() == "whole"
    assert clean_temp_files(tmp_path) == 0


def test_cached_stage_hits_verifies_and_recomputes(tmp_path: Path) -> None:
    run = StageRun.open(tmp_path)
    calls: list[str] = []

    def compute(key: str) -> Manifest:
        calls.append(key)
        out = run.layout.root / "out" / "thing.txt"
        write_text(out, "payload")
        return Manifest("demo", key, {"thing": artifact(run.layout, out, run.memo)}, {"n": 1})

    spec = StageInputs("demo", "1", "c", {"x": "h"})
    first = cached_stage(run, spec, compute=compute)
    second = cached_stage(run, spec, compute=compute)
    assert len(calls) == 1 and not first.data["cache_hit"] and second.data["cache_hit"]
    # Tamper with the output: the hit is no longer trusted.
    out = run.layout.root / "out" / "thing.txt"
    out.write_text("tampered")
    os.utime(out, ns=(time.time_ns() + 10_000, time.time_ns() + 10_000))
    third = cached_stage(run, spec, compute=compute)
    assert len(calls) == 2 and not third.data["cache_hit"]
    out.unlink()
    cached_stage(run, spec, compute=compute)
    assert len(calls) == 3
    lineage = read_lineage(run.layout)
    assert list(lineage["cache_hit"]) == [False, True, False, False]
    assert set(lineage["stage"]) == {"demo"}


@pytest.mark.parametrize("torn", [b"", b'{"stage": "de', b"\xff\xfe", b"[1, 2]"])
def test_manifests_are_not_fsynced_and_a_torn_one_is_a_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: bytes) -> None:
    """One fsync per scan and stage cost ~1 ms; a manifest a power cut leaves empty or
    garbled must then read as a cache miss, never as an error."""
    layout = DataLayout(tmp_path)
    cache = StageCache(layout, FileHashMemo(layout.file_hash_memo))
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    cache.store(Manifest("demo", "k1", {}, {"n": 1}))
    assert synced == [] and cache.lookup("demo", "k1") == Manifest("demo", "k1", {}, {"n": 1})
    write_text(tmp_path / "plain.txt", "durable")  # other files still are
    assert len(synced) == 1
    (layout.cache_dir("demo") / "k1.json").write_bytes(torn)
    assert cache.lookup("demo", "k1") is None and cache.stored("demo") == []


def test_tables_validate_schema(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    frame = pd.DataFrame(
        {
            "scan_id": ["s1"], "label": ["COVID"], "infection_ratio": [0.01],
            "sampling_group": ["covid_small"], "analysis_bin": ["0.005-0.030"],
            "ensemble_band": ["middle"],
        }
    )
    write_table(layout, "groups", frame)
    assert read_table(layout, "groups").equals(frame[list(read_table(layout, "groups").columns)])
    with pytest.raises(SchemaError, match="missing columns"):
        write_table(layout, "groups", frame.drop(columns=["label"]))
    with pytest.raises(SchemaError, match="values do not fit"):
        write_table(layout, "groups", frame.assign(infection_ratio=["high"]))
    # A table written with another schema is refused on read.
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"scan_id": ["x"]}), layout.table("groups"))
    with pytest.raises(SchemaError, match="expected"):
        read_table(layout, "groups")
