"""Progress of a long stage, for whoever is watching: a rich bar on a terminal, a line
per step (few steps) or per 10 % (many) otherwise, and a Prefect progress artifact
plus log lines for the UI.

Console lines go to the `dsan.progress` logger, which `flows.runtime` sends to stderr
at INFO while Prefect's own console output stays at WARNING; the Prefect run logger
gets the same lines for the UI.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

CONSOLE = logging.getLogger("dsan.progress")
#: Up to this many steps every step gets a line; beyond it, every 10 %.
EVERY_STEP_UP_TO = 20
#: The Prefect progress artifact is updated at most this often (and at the end): each
#: update is a call to the API, 7-19 ms measured, which per scan was a third of the
#: orchestration overhead of ingestion and segmentation (benchmarks/scale.py).
ARTIFACT_EVERY_S = 1.0


def _run_logger() -> logging.Logger | logging.LoggerAdapter[Any] | None:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a Prefect run there is no run logger
        return None


def _artifact(key: str | None, description: str) -> Any:
    if key is None:
        return None
    try:
        from prefect.artifacts import create_progress_artifact

        return create_progress_artifact(progress=0.0, key=key, description=description)
    except Exception:  # noqa: BLE001 - outside a Prefect run there is nothing to report to
        return None


class _SharedBars:
    """One rich live display per process (rich allows no more), with a row per running
    stage: concurrent training tasks each show their own bar."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._display: Any = None
        self._users = 0

    def add(self, description: str, total: int) -> tuple[Any, Any]:
        with self._lock:
            if self._display is None:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

                self._display = Progress(TextColumn("{task.description}"), BarColumn(),
                                         MofNCompleteColumn(), TimeElapsedColumn(),
                                         TimeRemainingColumn(),
                                         TextColumn("{task.fields[note]}"),
                                         console=Console(stderr=True), transient=True)
                self._display.start()
            self._users += 1
            return self._display, self._display.add_task(description, total=total, note="")

    def remove(self, task: Any) -> None:
        with self._lock:
            if self._display is None:
                return
            self._display.remove_task(task)
            self._users -= 1
            if self._users == 0:
                self._display.stop()
                self._display = None


_BARS = _SharedBars()


class StageProgress:
    """`with StageProgress("segmenting scans", total=85) as progress: progress.advance()`."""

    def __init__(self, description: str, total: int, *, unit: str = "",
                 artifact_key: str | None = None, terminal: bool | None = None) -> None:
        self.description = description
        self.total = max(int(total), 0)
        self.unit = unit
        self.done = 0
        self._terminal = sys.stderr.isatty() if terminal is None else terminal
        self._artifact_key = artifact_key
        self._artifact: Any = None
        self._bar: Any = None
        self._task: Any = None
        self._next_line = 0
        self._started = 0.0
        self._artifact_at = 0.0  # when the artifact was last updated (monotonic)
        self.artifact_updates = 0
        self._run_logger = _run_logger()

    def __enter__(self) -> StageProgress:
        self._started = self._artifact_at = time.monotonic()
        if self.total == 0:
            return self
        self._artifact = _artifact(self._artifact_key, self.description)
        if self._terminal:
            self._bar, self._task = _BARS.add(self.description, self.total)
        return self

    def advance(self, steps: int = 1, note: str = "") -> None:
        """`steps` more done; `note` (e.g. "loss 0.31, val AUC 0.84") goes on the line."""
        self.done = min(self.done + steps, self.total)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, note=note)
        if self._due() or note:
            self._line(note)
        if self._artifact is not None:
            now = time.monotonic()
            if self.done == self.total or now - self._artifact_at >= ARTIFACT_EVERY_S:
                from prefect.artifacts import update_progress_artifact

                update_progress_artifact(artifact_id=self._artifact,
                                         progress=100.0 * self.done / self.total)
                self._artifact_at = now
                self.artifact_updates += 1

    def _due(self) -> bool:
        if self.total <= EVERY_STEP_UP_TO or self.done == self.total:
            return True
        if 10 * self.done >= self._next_line * self.total:
            self._next_line = 10 * self.done // self.total + 1
            return True
        return False

    def _line(self, note: str) -> None:
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.description}: {self.done}/{self.total}{unit}"
        text += f" ({time.monotonic() - self._started:.0f} s)" + (f" {note}" if note else "")
        if not self._terminal:
            CONSOLE.info("%s", text)
        if self._run_logger is not None:
            self._run_logger.info("%s", text)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            _BARS.remove(self._task)
