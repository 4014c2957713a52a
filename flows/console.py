"""What a person at the terminal sees while a command runs.

- dsan's progress lines (`dsan.progress`, see tasks/_common/progress.py) on stderr at INFO,
  while Prefect's console handler stays at WARNING (flows.runtime);
- a user's mistake (a `DsanError`) as the CLI's one line, without the tracebacks
  Prefect's engine logs for the failed task and flow runs above it. A bug keeps its
  traceback.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator

from dsan_core.errors import DsanError

_FORMAT = "%(asctime)s.%(msecs)03d | %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_console() -> None:
    """Send `dsan` log records (progress, warnings) to stderr, once."""
    logger = logging.getLogger("dsan")
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # Prefect's background services warn while they drain their queues at exit
    # ("Still processing items: 3 items remaining..."): routine, not for the terminal.
    for service in ("EventsWorker", "APILogWorker"):
        logging.getLogger(service).setLevel(logging.ERROR)


def _error_names() -> re.Pattern[str]:
    names, todo = set(), [DsanError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return re.compile(r"\b(" + "|".join(sorted(names)) + r")\b[:(]")


class _HideUserErrors(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._names = _error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, DsanError):
            return False
        # "Finished in state Failed('... LabelsError: ...')" and friends, without exc_info.
        return not (record.levelno >= logging.ERROR and record.name.startswith("prefect")
                    and self._names.search(record.getMessage()) is not None)


@contextlib.contextmanager
def user_errors_as_one_line() -> Iterator[None]:
    """While a CLI command runs: Prefect's console handlers drop the records of a
    `DsanError` (the API handler keeps them for the UI)."""
    console_handlers = []
    for logger in [logging.getLogger(), *(logging.getLogger(name) for name in
                                          logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler not in console_handlers:
                console_handlers.append(handler)
    hide = _HideUserErrors()
    for handler in console_handlers:
        handler.addFilter(hide)
    try:
        yield
    finally:
        for handler in console_handlers:
            handler.removeFilter(hide)
