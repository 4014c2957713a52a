"""`dsan status` on a finished data root: what a rerun would recompute, and --verify."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage.layout import DataLayout

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _states(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        match = re.match(r"^│ (\S+)\s+│ (cached|stale|never run)\s+│(.*)│$", line)
        if match:
            found[match.group(1)] = match.group(2) + "|" + match.group(3).strip()
    return found


def test_status_says_what_a_rerun_would_recompute(pipeline_copy: Path, cohort: Path,
                                                  tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--profile", "test", "--data-root", str(pipeline_copy)]
    export = ["--dicom-root", str(cohort / "dicom"), "--labels", str(cohort / "labels.csv"),
              "--masks", str(cohort / "masks")]
    result = runner.invoke(app, ["status", *common, *export], terminal_width=200)
    assert result.exit_code == 0, result.output
    states = _states(result.output)
    assert {s.split("|")[0] for s in states.values()} == {"cached"}, result.output

    # Another training seed: the trainings are stale for that reason; what follows waits.
    profile = tmp_path / "seed.yaml"
    text = (Path(__file__).parents[2] / "profiles" / "test.yaml").read_text()
    profile.write_text(text.replace("train:\n", "train:\n  seed: 5\n"))
    result = runner.invoke(app, ["status", "--profile", str(profile), "--data-root",
                                 str(pipeline_copy)], terminal_width=200)
    states = _states(result.output)
    assert states["train"].startswith("stale|") and "6 of 6: seed changed" in states["train"]
    assert states["ensemble"] == "stale|after train"
    assert states["preprocess"].startswith("cached")

    # Same-size garbage with its mtime restored is trusted (like make) until --verify.
    layout = DataLayout(pipeline_copy)
    victim = layout.table("predictions")
    info = victim.stat()
    victim.write_bytes(b"\0" * info.st_size)
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns))
    trusted = _states(runner.invoke(app, ["status", *common], terminal_width=200).output)
    assert trusted["ensemble"].startswith("cached")
    verified = runner.invoke(app, ["status", "--verify", *common], terminal_width=200)
    assert "tables/predictions.parquet" in verified.output
    assert _states(verified.output)["ensemble"].startswith("stale")
