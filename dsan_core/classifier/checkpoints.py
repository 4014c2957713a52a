"""Classifier checkpoints: plain dicts that `torch.load(weights_only=True)` reads back.

A checkpoint (format `CHECKPOINT_FORMAT`) is written at the end of every epoch by the
shared loop (`dsan_core.training_loop`), with the classifier's own keys:

    format              "dsan-classifier-checkpoint-v1"
    branch, fold        "att_us" | "att_ss" | "rn34_us"; the fold label (str) or None
    seed                the training seed
    epoch               epochs finished (1-based)
    model, optimizer    this epoch's weights (CPU tensors) and Adam state
    best_epoch          the kept epoch; best_select_auc, best_select_loss its scores on
                        the inner validation split (NaN with epoch_selection "last")
    best_model          its weights: the fold's model for this branch (after training,
                        with its logit calibration when TrainConfig.calibrate_logits)
    calibration         {"logit_shift", "logit_scale"} (final checkpoint, when calibrated)
    history             one dict per epoch (`ClassifierEpochReport` fields)
    config              TrainConfig.model_dump(mode="json"); training_fingerprint
    sampler             {"kind": "uniform" | "size_balanced", "weights": {group: W_g}
                         ({} for uniform), "group_counts": {group: n}, "num_samples": n}
    train_scan_ids      the fold's training scans; fit_scan_ids / select_scan_ids their
                        part trained on / the inner split the epoch was chosen on, so a
                        resume on other data fails. The fold's validation scans are not
                        in it: training never sees them.
"""

from __future__ import annotations

from typing import Any

import torch

from dsan_core.classifier.network import UNCALIBRATED, DSANet
from dsan_core.config import TrainConfig
from dsan_core.errors import ModelError
from dsan_core.training_loop import check_format as check_checkpoint_format

CHECKPOINT_FORMAT = "dsan-classifier-checkpoint-v1"
#: Config fields that fix the network's shape (the rest only change its training).
ARCHITECTURE_FIELDS: tuple[str, ...] = ("width", "layers", "feature_stride")


def build_classifier(config: TrainConfig) -> DSANet:
    """A freshly initialised DSANet of `config`'s width, depth and feature stride (one
    input channel)."""
    return DSANet(width=config.width, in_channels=1, layers=config.layers,
                  feature_stride=config.feature_stride)


def check_format(checkpoint: dict[str, Any]) -> None:
    """`checkpoint` is a classifier checkpoint (`CHECKPOINT_FORMAT`)."""
    check_checkpoint_format(checkpoint, CHECKPOINT_FORMAT)


def check_architecture(checkpoint: dict[str, Any], config: TrainConfig) -> None:
    """The checkpoint's network has `config`'s width, layers and feature stride (a
    checkpoint from before a field existed has its default)."""
    saved = checkpoint.get("config", {})
    for field in ARCHITECTURE_FIELDS:
        expected = getattr(config, field)
        found = saved.get(field, TrainConfig.model_fields[field].default)
        found_cmp = tuple(found) if isinstance(found, list) else found
        if found_cmp != expected:
            raise ModelError(
                f"expected a classifier checkpoint with {field} {expected!r}, found {found!r}"
            )


def load_classifier(
    checkpoint: dict[str, Any], config: TrainConfig, device: torch.device, *, best: bool = True
) -> DSANet:
    """A DSANet in eval mode on `device` with the checkpoint's best (or last) weights."""
    check_format(checkpoint)
    check_architecture(checkpoint, config)
    model = build_classifier(config)
    try:
        state = dict(checkpoint["best_model" if best else "model"])
        # Checkpoints from before logit calibration existed: uncalibrated.
        for name, value in UNCALIBRATED.items():
            state.setdefault(name, torch.tensor(value))
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as error:
        raise ModelError(f"classifier checkpoint does not fit the network: {error}") from None
    return model.to(torch.device(device)).eval()
