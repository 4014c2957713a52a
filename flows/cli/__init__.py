"""`dsan`, the command line: the app (`flows.cli.app`) with every command group
registered on it, in the order `dsan --help` lists them."""

from __future__ import annotations

import importlib

from flows.cli.app import app

#: Command modules under flows/cli/, in the order of the pipeline.
COMMAND_GROUPS = ("pipeline", "models", "predict", "review", "ingest", "segmentation", "splits",
                  "preprocess", "training", "evaluation", "status", "lineage", "orchestration",
                  "data")
for _group in COMMAND_GROUPS:
    importlib.import_module(f"flows.cli.{_group}")

__all__ = ["COMMAND_GROUPS", "app", "main"]


def main() -> None:  # pragma: no cover - console script
    app(prog_name="dsan")
