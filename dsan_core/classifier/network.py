"""DSANet: a 3D ResNet34 whose class activation map feeds the online attention module.

Tensors are (batch, channels, z, y, x). Layout for width w (METHOD.md "Network"; Hara et
al. 2018 with BasicBlocks and projection shortcuts, "type B"):

    stem    conv 7x7x7 stride 2 (in -> w) + BN + ReLU, max-pool 3x3x3 stride 2    1/4
    stage 1 layers[0] BasicBlocks at w,  stride 1                                 1/4
    stage 2 layers[1] BasicBlocks at 2w, stride 2                                 1/8
    stage 3 layers[2] BasicBlocks at 4w, stride 2                                 1/16
    stage 4 layers[3] BasicBlocks at 8w, stride 1 (the paper's change)           1/16
    head    global average pool -> fc = Linear(8w, 1): the COVID logit

That is `feature_stride` 16, the paper's. Stride 8 keeps stage 3 at stride 1 too, so
the feature maps (and the CAM that L_ex shapes) are twice as fine per axis, at the cost
of stages 3 and 4 running on 8x the voxels: at a small input (the CPU demo's 24-48
slices) a 1/16 CAM is 2-3 cells deep, coarser than most lesions. Stride 4 also keeps
stage 2 at stride 1.

Every strided layer pads so an axis of n voxels becomes ceil(n / 2), so the feature
maps are ceil(n / feature_stride) per axis for any input size (`feature_shape`).

The class activation map is A = ReLU(conv1x1x1(f, fc.weight)) without bias, computed
with `fc.weight.detach()` at every forward pass: the kernel is the FC weight itself
(it cannot drift from it) and the attention loss trains the backbone, never the FC.

The logit is (fc(pool(f)) - logit_shift) / logit_scale: two buffers, 0 and 1 while
training, that `calibrate_logits` may set afterwards from the model's own training
scans so that the fold models of one branch speak the same scale (the CAM and its
normalised maps do not change).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dsan_core.errors import ConfigError, ModelError


class DSANetOutput(NamedTuple):
    """`logit` (B,) float; `cam` (B, 1, ceil(D/s), ceil(H/s), ceil(W/s)) float, >= 0, s the
    feature stride (16 in the paper)."""

    logit: torch.Tensor
    cam: torch.Tensor


#: The logit calibration buffers' values before `calibrate_logits` sets them (identity).
UNCALIBRATED: dict[str, float] = {"logit_shift": 0.0, "logit_scale": 1.0}


#: Stage strides per feature stride (the stem's 1/4 times the strided stages).
STAGE_STRIDES: dict[int, tuple[int, int, int, int]] = {
    16: (1, 2, 2, 1), 8: (1, 2, 1, 1), 4: (1, 1, 1, 1)}


def feature_shape(size: Sequence[int], feature_stride: int = 16) -> tuple[int, ...]:
    """The (z, y, x) size of the feature maps (and the CAM) for an input of `size`."""
    _check_stride(feature_stride)
    return tuple(math.ceil(int(n) / feature_stride) for n in size)


def _check_stride(feature_stride: int) -> None:
    if feature_stride not in STAGE_STRIDES:
        raise ConfigError(f"expected a feature stride in {sorted(STAGE_STRIDES)}, found "
                          f"{feature_stride}")


class BasicBlock(nn.Module):
    """Two 3x3x3 convs with BN; a 1x1x1 conv + BN shortcut when stride or width change."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm3d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, channels, stride)]
    layers += [BasicBlock(channels, channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class DSANet(nn.Module):
    """3D ResNet (default ResNet34) with a CAM branch sharing the FC weights.

    `width` is the channel count of the first stage (the paper's 64); `layers` the
    BasicBlocks per stage. The same class serves the attention branches and the RN34
    baseline: the baseline simply ignores `cam` in its loss.
    """

    logit_shift: torch.Tensor
    logit_scale: torch.Tensor

    def __init__(
        self, width: int = 64, in_channels: int = 1, layers: Sequence[int] = (3, 4, 6, 3),
        feature_stride: int = 16,
    ) -> None:
        super().__init__()
        if width < 1 or in_channels < 1:
            raise ConfigError(f"expected width and in_channels >= 1, found {width}, {in_channels}")
        if len(layers) != 4 or min(layers) < 1:
            raise ConfigError(f"expected 4 stages of >= 1 block each, found {list(layers)}")
        _check_stride(feature_stride)
        self.width, self.in_channels, self.layers = width, in_channels, tuple(layers)
        self.feature_stride = feature_stride
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        widths = (width, 2 * width, 4 * width, 8 * width)
        strides = STAGE_STRIDES[feature_stride]
        stages, previous = [], width
        for channels, blocks, stride in zip(widths, layers, strides, strict=True):
            stages.append(_stage(previous, channels, blocks, stride))
            previous = channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(8 * width, 1)
        for name, value in UNCALIBRATED.items():
            self.register_buffer(name, torch.tensor(value))
        self._init_weights()

    def _init_weights(self) -> None:
        # Hara et al.'s initialisation: He (fan-out) for convs, BN as identity.
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f: (B, 8w, ceil(D/s), ceil(H/s), ceil(W/s)) from x: (B, in_channels, D, H, W),
        s the feature stride."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ModelError(
                f"expected input (batch, {self.in_channels}, z, y, x), found {tuple(x.shape)}"
            )
        return self.stages(self.stem(x))

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        """The COVID logit (B,) of feature maps f: global average pool, fc, then the
        calibration (identity unless set)."""
        raw = self.fc(f.mean(dim=(2, 3, 4))).squeeze(1)
        return (raw - self.logit_shift) / self.logit_scale

    def class_activation(self, f: torch.Tensor) -> torch.Tensor:
        """A = ReLU(conv1x1x1(f, fc.weight)), no bias: (B, 1, d, h, w), no gradient into fc."""
        kernel = self.fc.weight.detach().view(1, -1, 1, 1, 1)
        return F.relu(F.conv3d(f, kernel.to(f.dtype)))

    def forward(self, x: torch.Tensor) -> DSANetOutput:
        f = self.features(x)
        # The head and the CAM in float32 even under bf16 autocast: bf16 keeps ~3
        # significant digits, which would tie close logits (and so AUCs), and
        # soft_attention's sigmoid(100 * (A - 0.4)) turns A's rounding (up to ~0.004
        # after normalisation) into up to ~0.1 of the soft mask. Both are tiny layers.
        with torch.autocast(device_type=f.device.type, enabled=False):
            f = f.float()
            return DSANetOutput(self.classify(f), self.class_activation(f))
