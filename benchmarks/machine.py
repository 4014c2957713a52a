"""The machine a benchmark ran on, as its output names it."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model and whether it has AVX-512 (trained numbers and speed differ by it)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), platform.machine())
    return f"{model} ({'AVX-512' if 'avx512f' in info else 'no AVX-512'})"
