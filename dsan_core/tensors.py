"""Tensors over NumPy arrays without a copy."""

from __future__ import annotations

import numpy as np
import torch

from dsan_core.quiet import keep_ignored


def shared_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing `array`'s memory, read-only arrays included (a memory map, a
    SimpleITK view). torch warns that it cannot protect those from writes through the
    tensor; nothing here writes to them."""
    keep_ignored(message="The given NumPy array is not writable", category=UserWarning)
    return torch.from_numpy(array)
