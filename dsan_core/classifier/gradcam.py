"""Grad-CAM (Selvaraju et al. 2017) of the COVID logit, for the RN34 + US baseline's maps.

Channel weights are the spatial mean of d logit / d f over the last feature maps f;
the map is ReLU(sum_k weight_k f_k), upsampled (trilinear) to the input grid and
min-max normalised per sample. With DSANet's head (global average pool -> one linear
unit) the gradient is fc.weight / (d h w) at every voxel, so Grad-CAM equals the
normalised CAM of the same network; it is computed through autograd anyway, so it
stays Grad-CAM if the head changes.
"""

from __future__ import annotations

import torch

from dsan_core.classifier.attention import normalise_per_sample, upsample_cam
from dsan_core.classifier.network import DSANet


def grad_cam(net: DSANet, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps (B, 1, D, H, W) float32 in [0, 1] for x: (B, 1, D, H, W).

    Uses the network in its current mode (call `net.eval()` first for figures);
    changes no parameter gradient.
    """
    with torch.no_grad():
        features = net.features(x)
    with torch.enable_grad():
        f = features.detach().float().requires_grad_(True)
        logit = net.classify(f)
        (gradient,) = torch.autograd.grad(logit.sum(), f)
    weights = gradient.mean(dim=(2, 3, 4), keepdim=True)
    maps = torch.relu((weights * f.detach()).sum(dim=1, keepdim=True))
    return normalise_per_sample(upsample_cam(maps, x.shape[2:]))
