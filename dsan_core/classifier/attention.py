"""The online attention module's soft mask T(A) and the attention loss L_ex (METHOD.md
"Network").

Tensors are (batch, 1, z, y, x). Both functions compute in float32 whatever the input
dtype (under bf16 autocast the CAM arrives in bf16; alpha = 100 would turn bf16's
coarse steps near beta into visible jumps in T).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dsan_core.config import ATTENTION_ALPHA, ATTENTION_BETA
from dsan_core.errors import ModelError

#: Below this min-max range a map counts as flat and normalises to (about) 0 everywhere.
FLAT_RANGE = 1e-12


def upsample_cam(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The CAM (B, 1, d, h, w) on the input grid `size` (D, H, W), trilinear, float32."""
    if cam.ndim != 5:
        raise ModelError(f"expected a CAM (batch, 1, z, y, x), found {tuple(cam.shape)}")
    target = tuple(int(n) for n in size)
    if len(target) != 3:
        raise ModelError(f"expected a (z, y, x) size, found {target}")
    return F.interpolate(cam.float(), size=target, mode="trilinear", align_corners=False)


def normalise_per_sample(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise every sample of (B, ...) to [0, 1]; a flat sample becomes 0."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values
    span = flat.max(dim=1).values - low
    # Dividing a (near-)flat sample by 1 instead of its span keeps it at (about) 0
    # without a full-size torch.where; maps - low is exactly 0 on a flat sample.
    divisor = torch.where(span > FLAT_RANGE, span, torch.ones_like(span))
    shape = (-1,) + (1,) * (maps.ndim - 1)
    return (maps - low.view(shape)) / divisor.view(shape)


def soft_attention(
    cam: torch.Tensor, size: Sequence[int], alpha: float = ATTENTION_ALPHA,
    beta: float = ATTENTION_BETA
) -> torch.Tensor:
    """T(A) = sigmoid(alpha * (A' - beta)), A' the CAM upsampled to `size` and min-max
    normalised per sample: (B, 1, D, H, W) float32 in (0, 1). A flat CAM gives
    sigmoid(-alpha * beta) everywhere (finite, no NaN)."""
    normalised = normalise_per_sample(upsample_cam(cam, size))
    return torch.sigmoid(alpha * (normalised - beta))


def attention_loss(
    soft_mask: torch.Tensor, infection: torch.Tensor, is_covid: torch.Tensor
) -> torch.Tensor:
    """L_ex = sum (T - M)^2 / (sum T + sum M) per sample, averaged over COVID samples.

    `soft_mask` T and `infection` M are (B, 1, D, H, W) (M 0/1, any dtype); `is_covid`
    (B,) bool or 0/1. CAP samples contribute nothing; a batch without COVID gives
    exactly 0, still attached to T's graph so `backward()` works unconditionally.
    """
    if soft_mask.shape != infection.shape:
        raise ModelError(
            f"expected the infection mask in the soft mask's shape {tuple(soft_mask.shape)}, "
            f"found {tuple(infection.shape)}"
        )
    covid = is_covid.reshape(-1).to(device=soft_mask.device, dtype=torch.bool)
    if covid.numel() != soft_mask.shape[0]:
        raise ModelError(
            f"expected one COVID flag per sample ({soft_mask.shape[0]}), found {covid.numel()}"
        )
    t = soft_mask.float().flatten(1)
    m = infection.to(device=t.device, dtype=torch.float32).flatten(1)
    # T > 0 everywhere in exact arithmetic, but sigmoid can underflow to 0 in float32
    # on an empty mask; the floor keeps 0 / 0 from becoming NaN.
    denominator = (t.sum(dim=1) + m.sum(dim=1)).clamp_min(torch.finfo(torch.float32).tiny)
    per_sample = ((t - m) ** 2).sum(dim=1) / denominator
    # Masking instead of indexing keeps the graph (and avoids a device sync): with no
    # COVID sample the sum is exactly 0 and the divisor 1.
    return (per_sample * covid).sum() / covid.sum().clamp_min(1)
