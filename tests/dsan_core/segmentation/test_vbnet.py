from __future__ import annotations

import pytest
import torch

from dsan_core.config import VBNetConfig
from dsan_core.errors import ConfigError
from dsan_core.segmentation.vbnet import N_CLASSES, BottleneckBlock, build_vbnet


@pytest.mark.parametrize("channels", [4, 8, 32])
def test_bottleneck_keeps_shape_and_narrows_to_a_quarter(channels: int) -> None:
    torch.manual_seed(0)
    block = BottleneckBlock(channels)
    x = torch.randn(2, channels, 4, 6, 8)
    assert block(x).shape == x.shape
    assert block.inner_channels == channels // 4
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (channels, channels // 4, (1, 1, 1)),
        (channels // 4, channels // 4, (3, 3, 3)),
        (channels // 4, channels, (1, 1, 1)),
    ]
    norms = [m for m in block.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert len(norms) == 3


def test_bottleneck_is_residual() -> None:
    # With the last norm's scale and shift at zero the branch adds nothing: out = relu(x).
    block = BottleneckBlock(8)
    last_norm = block.expand[1]
    torch.nn.init.zeros_(last_norm.weight)
    torch.nn.init.zeros_(last_norm.bias)
    x = torch.randn(1, 8, 3, 3, 3)
    assert torch.equal(block(x), torch.relu(x))


@pytest.mark.parametrize("channels", [2, 6])
def test_bottleneck_refuses_channels_not_divisible_by_four(channels: int) -> None:
    with pytest.raises(ConfigError, match="multiple of 4"):
        BottleneckBlock(channels)


@pytest.mark.parametrize(("depth", "blocks"), [(2, 1), (3, 2)])
def test_vbnet_outputs_three_classes_at_input_size(depth: int, blocks: int) -> None:
    torch.manual_seed(0)
    config = VBNetConfig(base_width=4, depth=depth, blocks_per_level=blocks,
                         patch_size=(8, 16, 16))
    model = build_vbnet(config)
    x = torch.rand(2, 1, 8, 16, 16)
    assert model(x).shape == (2, N_CLASSES, 8, 16, 16)
    n_bottlenecks = sum(isinstance(m, BottleneckBlock) for m in model.modules())
    assert n_bottlenecks == blocks * (2 * depth - 1)


def test_vbnet_widths_double_per_level() -> None:
    model = build_vbnet(VBNetConfig(base_width=8, depth=3, patch_size=(8, 8, 8)))
    widths = [m.out_channels for m in model.downs.modules() if isinstance(m, torch.nn.Conv3d)
              and m.stride == (2, 2, 2)]
    assert widths == [16, 32]


def test_patch_not_divisible_is_refused() -> None:
    with pytest.raises(ConfigError, match="divisible by 8"):
        build_vbnet(VBNetConfig(base_width=4, depth=4, patch_size=(12, 16, 16)))
    model = build_vbnet(VBNetConfig(base_width=4, depth=2, patch_size=(8, 8, 8)))
    with pytest.raises(ConfigError, match="divisible by 2"):
        model(torch.zeros(1, 1, 7, 8, 8))
