"""Model checkpoints: written atomically, loaded with `weights_only=True` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from storage.atomic import atomic_path


def save_checkpoint(state: dict[str, Any], destination: Path) -> None:
    with atomic_path(destination) as temp:
        torch.save(state, temp)


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
    return state
