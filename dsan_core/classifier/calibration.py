"""Two post-hoc calibrations of a trained classifier, both on its training scans only:
BatchNorm's running statistics ("precise BN") and the logit's shift and scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dsan_core.classifier.data import ClassifierCase
from dsan_core.classifier.inference import autocast_for, predict_logits, to_network_input
from dsan_core.classifier.network import DSANet
from dsan_core.config import TrainConfig


def recalibrate_batch_norm(model: DSANet, loader: DataLoader[dict[str, Any]], *,
                           device: torch.device, mixed_precision: bool,
                           channels_last: bool = False) -> None:
    """Replace BatchNorm's running statistics by the training set's, computed with the
    epoch's final weights ("precise BN", Wu & Johnson 2021).

    With a few scans per batch the running averages follow noisy batch statistics of
    weights that kept changing, so eval-mode outputs drift far from training-mode ones
    (validation losses jumping 10x between epochs on the demo). One forward pass over
    the training scans, in train mode and without gradients, averages every batch's
    statistics with equal weight (momentum None).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad(), autocast_for(device, mixed_precision):
        for batch in loader:
            model(to_network_input(batch["image"], device, channels_last=channels_last))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


def calibrate_logits(model: DSANet, cases: Sequence[ClassifierCase], config: TrainConfig, *,
                     device: torch.device) -> tuple[float, float]:
    """Set `model`'s logit calibration from its own training scans; returns (shift, scale).

    Fold models trained on a few dozen scans each end at different offsets and scales
    (a scan without infection may score -0.7 in one fold and +0.2 in the next), so
    their out-of-fold predictions, pooled, rank worse than each fold's alone, and an
    average over fold models is dominated by the widest. Calibration maps each
    model's logits to a common frame using its training scans only (never validation
    or test labels): 0 is the midpoint between the mean logits of its COVID and CAP
    training scans (the mean of all when one class is missing), and 1 unit is the
    standard deviation of its training logits (1 when they are all equal). AUC within
    one model does not change.
    """
    model.logit_shift.fill_(0.0)
    model.logit_scale.fill_(1.0)
    logits = predict_logits(model, cases, device=device, batch_size=config.val_batch_size,
                            num_workers=config.num_workers,
                            mixed_precision=config.mixed_precision,
                            channels_last=config.channels_last_3d)
    labels = np.array([case.label for case in cases])
    if np.unique(labels).size == 2:
        shift = float((logits[labels == 1].mean() + logits[labels == 0].mean()) / 2)
    else:
        shift = float(logits.mean())
    spread = float(logits.std())
    scale = spread if spread > 1e-6 else 1.0
    model.logit_shift.fill_(shift)
    model.logit_scale.fill_(scale)
    return float(model.logit_shift), float(model.logit_scale)
