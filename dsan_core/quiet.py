"""Warnings ignored for the whole process, safely from any thread.

`warnings.catch_warnings` swaps the process's filter list on entry and puts the old one
back on exit: two threads inside it at once can leave the list as either of them found
it (every warning ignored, say; it happened on a threaded Dask cluster). So code that
runs on worker threads adds its filter to the list instead, once, and again after
something put an older list back (pytest does, around each test).
"""

from __future__ import annotations

import re
import threading
import warnings

_lock = threading.Lock()


def keep_ignored(*, message: str = "", category: type[Warning] = Warning,
                 module: str = "") -> None:
    """Ignore warnings whose message starts with `message` (any case), of `category`,
    raised from modules whose name matches `module` (regular expressions, as in
    `warnings.filterwarnings`), from now on in this process."""
    item = ("ignore", re.compile(message, re.IGNORECASE) if message else None, category,
            re.compile(module) if module else None, 0)
    with _lock:
        if item not in warnings.filters:
            warnings.filterwarnings("ignore", message=message, category=category,
                                    module=module)
