"""VB-Net: a V-Net whose convolution units are residual bottlenecks.

Tensors are (batch, channels, z, y, x). Normalisation is InstanceNorm3d with affine
parameters: it behaves the same at batch size 1-2 and in training and evaluation,
which BatchNorm does not with the small batches 3D patches allow.

Layout for depth D and base width C (level i has width C * 2**i):

    input conv 3x3x3 (1 -> C) + bottlenecks                     level 0
    down: conv 2x2x2 stride 2 (C_i -> C_{i+1}) + bottlenecks    levels 1..D-1
    up: transposed conv 2x2x2 stride 2 -> C_i, concat skip (2 C_i) + bottlenecks
    head: conv 1x1x1 (2 C_0 -> 3 classes: background, lung, infection)

Each spatial size must be divisible by 2**(D-1); `required_divisor` says by what.
"""

from __future__ import annotations

import torch
from torch import nn

from dsan_core.config import VBNetConfig
from dsan_core.errors import ConfigError

#: Output classes, in channel order.
CLASS_NAMES: tuple[str, str, str] = ("background", "lung", "infection")
N_CLASSES = len(CLASS_NAMES)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm3d(channels, affine=True)


class BottleneckBlock(nn.Module):
    """Residual bottleneck: 1x1x1 to C/4, 3x3x3 at C/4, 1x1x1 back to C (norm + ReLU each)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 4 or channels % 4:
            raise ConfigError(f"bottleneck channels must be a multiple of 4, got {channels}")
        inner = channels // 4
        self.inner_channels = inner
        self.reduce = nn.Sequential(
            nn.Conv3d(channels, inner, 1, bias=False), _norm(inner), nn.ReLU(inplace=True)
        )
        self.conv = nn.Sequential(
            nn.Conv3d(inner, inner, 3, padding=1, bias=False), _norm(inner), nn.ReLU(inplace=True)
        )
        self.expand = nn.Sequential(nn.Conv3d(inner, channels, 1, bias=False), _norm(channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.expand(self.conv(self.reduce(x))))


def _blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(BottleneckBlock(channels) for _ in range(count)))


class _Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_blocks: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv3d(c_in, c_out, 2, stride=2, bias=False), _norm(c_out), nn.ReLU(inplace=True)
        )
        self.blocks = _blocks(c_out, n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(x))


class _Up(nn.Module):
    def __init__(self, c_in: int, c_skip: int, n_blocks: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose3d(c_in, c_skip, 2, stride=2, bias=False),
            _norm(c_skip),
            nn.ReLU(inplace=True),
        )
        self.blocks = _blocks(2 * c_skip, n_blocks)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(torch.cat([self.up(x), skip], dim=1))


class VBNet(nn.Module):
    """The network; build it with `build_vbnet`. Returns logits (B, 3, z, y, x)."""

    def __init__(self, base_width: int, depth: int, blocks_per_level: int) -> None:
        super().__init__()
        widths = [base_width * 2**level for level in range(depth)]
        self.depth = depth
        self.stem = nn.Sequential(
            nn.Conv3d(1, widths[0], 3, padding=1, bias=False),
            _norm(widths[0]),
            nn.ReLU(inplace=True),
            _blocks(widths[0], blocks_per_level),
        )
        self.downs = nn.ModuleList(
            _Down(widths[i], widths[i + 1], blocks_per_level) for i in range(depth - 1)
        )
        # Decoder level i gets the deeper level's output (widths[i+1] at the bottom,
        # 2 * widths[i+1] above it because of the concatenation).
        ups = []
        for i in reversed(range(depth - 1)):
            c_in = widths[i + 1] if i == depth - 2 else 2 * widths[i + 1]
            ups.append(_Up(c_in, widths[i], blocks_per_level))
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv3d(2 * widths[0], N_CLASSES, 1)

    @property
    def required_divisor(self) -> int:
        return int(2 ** (self.depth - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(size % self.required_divisor for size in x.shape[2:]):
            raise ConfigError(
                f"VB-Net input spatial size must be divisible by {self.required_divisor}, "
                f"got {tuple(x.shape[2:])}"
            )
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        out = skips.pop()
        for up in self.ups:
            out = up(out, skips.pop())
        return self.head(out)


def build_vbnet(config: VBNetConfig) -> VBNet:
    """A freshly initialised VB-Net (seed torch before calling for reproducible weights)."""
    divisor = 2 ** (config.depth - 1)
    if any(size % divisor for size in config.patch_size):
        raise ConfigError(
            f"patch_size {config.patch_size} must be divisible by {divisor} for depth "
            f"{config.depth}"
        )
    if config.base_width % 4:
        raise ConfigError(f"base_width must be a multiple of 4, got {config.base_width}")
    return VBNet(config.base_width, config.depth, config.blocks_per_level)
