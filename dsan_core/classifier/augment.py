"""Training-time augmentation of classifier batches (not in the paper; `TrainConfig.augment`).

Both draw from torch's global generator, which the epoch loop re-seeds from (seed,
epoch) at the start of every epoch (`dsan_core.training_loop`), so a resumed run draws
the same flips and offsets as an uninterrupted one. Batches are (B, 1, z, y, x).
"""

from __future__ import annotations

import torch


def mirror_left_right(x: torch.Tensor, infection: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each scan of a (B, 1, z, y, x) batch mirrored along x (left-right) with
    probability 1/2, its infection mask with it. Drawn from torch's global generator,
    which the loop reseeds every epoch, so a resumed run draws the same flips."""
    flip = torch.rand(x.shape[0]) < 0.5
    if not bool(flip.any()):
        return x, infection
    index = flip.nonzero().flatten().to(x.device)
    x = x.clone()
    x[index] = x[index].flip(-1)
    if infection is not None:
        infection = infection.clone()
        infection[index] = infection[index].flip(-1)
    return x, infection


def shift_lung_intensity(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Each scan of a (B, 1, z, y, x) batch with its lung voxels (those above 0: the input
    is lung-masked) shifted by one offset from U(-amount, amount), clipped to [0, 1], the
    outside left at 0. Drawn from torch's global generator, reseeded every epoch."""
    offsets = (torch.rand(x.shape[0]) * 2.0 - 1.0) * amount
    shifted = (x + offsets.to(x.device, x.dtype).view(-1, 1, 1, 1, 1)).clamp(0.0, 1.0)
    return torch.where(x > 0, shifted, x)
