"""Classifier inference: COVID probabilities per scan and per-scan maps on the input grid.

Maps are (z, y, x) float32 in [0, 1] on the pre-processed grid of the case's image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import expit
from torch.utils.data import DataLoader

from dsan_core.classifier.attention import normalise_per_sample, soft_attention, upsample_cam
from dsan_core.classifier.data import ClassifierCase, make_loader, read_image
from dsan_core.classifier.gradcam import grad_cam
from dsan_core.classifier.network import DSANet
from dsan_core.config import ATTENTION_ALPHA, ATTENTION_BETA
from dsan_core.tensors import shared_tensor

MapKind = Literal["attention", "soft_attention", "grad_cam"]


def autocast_for(device: torch.device, mixed_precision: bool) -> torch.autocast:
    """bf16 autocast on CUDA when `mixed_precision`; a disabled context otherwise."""
    enabled = device.type == "cuda" and mixed_precision
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def to_network_input(
    images: torch.Tensor, device: torch.device, *, channels_last: bool = False
) -> torch.Tensor:
    """A (B, 1, z, y, x) batch on `device` as float32 (cast there, after the copy)."""
    x = images.to(device, non_blocking=True).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside the block, the previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def logits_from_loader(
    model: DSANet,
    loader: DataLoader[dict[str, Any]],
    *,
    device: torch.device,
    mixed_precision: bool = True,
    channels_last: bool = False,
) -> np.ndarray:
    """COVID logits (n,) float64 of every batch of `loader`, in its order (eval mode)."""
    chunks = []
    with evaluating(model), torch.no_grad():
        for batch in loader:
            x = to_network_input(batch["image"], device, channels_last=channels_last)
            with autocast_for(device, mixed_precision):
                logit = model(x).logit
            chunks.append(logit.float().cpu())
    if not chunks:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(chunks).double().numpy()


def predict_logits(
    model: DSANet,
    cases: Sequence[ClassifierCase],
    *,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
    mixed_precision: bool = True,
    channels_last: bool = False,
) -> np.ndarray:
    """COVID logits (n,) float64, in the order of `cases` (eval mode, no gradients)."""
    device = torch.device(device)
    if not cases:
        return np.zeros(0, dtype=np.float64)
    loader = make_loader(cases, batch_size=batch_size, sampler=None, with_infection=False,
                         num_workers=num_workers, device=device)
    return logits_from_loader(model, loader, device=device, mixed_precision=mixed_precision,
                              channels_last=channels_last)


def predict_probabilities(
    model: DSANet,
    cases: Sequence[ClassifierCase],
    *,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
    mixed_precision: bool = True,
    channels_last: bool = False,
) -> np.ndarray:
    """P(COVID) (n,) float64 in [0, 1], in the order of `cases`."""
    logits = predict_logits(model, cases, device=device, batch_size=batch_size,
                            num_workers=num_workers, mixed_precision=mixed_precision,
                            channels_last=channels_last)
    return np.asarray(expit(logits), dtype=np.float64)


def attention_map(
    model: DSANet,
    case: ClassifierCase,
    *,
    device: torch.device,
    kind: MapKind = "attention",
    mixed_precision: bool = True,
    alpha: float = ATTENTION_ALPHA,
    beta: float = ATTENTION_BETA,
) -> np.ndarray:
    """One scan's map, (z, y, x) float32 in [0, 1] on its image's grid.

    "attention": the CAM A upsampled and min-max normalised (what the attention loss
    thresholds); "soft_attention": T(A) with `alpha`, `beta`; "grad_cam": Grad-CAM of
    the COVID logit (for the RN34 baseline).
    """
    if kind not in ("attention", "soft_attention", "grad_cam"):
        raise ValueError(f"expected kind attention, soft_attention or grad_cam, found {kind!r}")
    device = torch.device(device)
    image = shared_tensor(read_image(case))[None, None]
    x = to_network_input(image, device)
    with evaluating(model):
        if kind == "grad_cam":
            with autocast_for(device, mixed_precision):
                maps = grad_cam(model, x)
        else:
            with torch.no_grad(), autocast_for(device, mixed_precision):
                cam = model(x).cam
            # The map itself in float32, outside autocast (alpha = 100 amplifies rounding).
            if kind == "soft_attention":
                maps = soft_attention(cam, x.shape[2:], alpha=alpha, beta=beta)
            else:
                maps = normalise_per_sample(upsample_cam(cam, x.shape[2:]))
    return maps[0, 0].detach().float().cpu().numpy()
