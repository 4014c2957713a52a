from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dsan_core.classifier import DSANet, attention_loss, feature_shape, soft_attention
from dsan_core.errors import ConfigError, ModelError

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "size", [(16, 16, 16), (32, 48, 64), (17, 33, 20), (24, 40, 31), (5, 7, 9), (138, 20, 18)]
)
def test_logit_and_cam_shapes_are_one_sixteenth_rounded_up(size: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = DSANet(width=4, layers=(1, 1, 1, 1)).eval()
    out = net(torch.rand(2, 1, *size))
    expected = tuple(math.ceil(n / 16) for n in size)
    assert feature_shape(size) == expected
    assert out.logit.shape == (2,)
    assert out.cam.shape == (2, 1, *expected)
    assert out.cam.min() >= 0
    assert net.features(torch.rand(1, 1, *size)).shape == (1, 32, *expected)


@pytest.mark.parametrize("stride", [8, 4])
def test_finer_feature_strides_keep_the_weights_and_refine_the_cam(stride: int) -> None:
    size = (24, 40, 33)
    torch.manual_seed(0)
    paper = DSANet(width=4, layers=(1, 1, 1, 1))
    torch.manual_seed(0)
    finer = DSANet(width=4, layers=(1, 1, 1, 1), feature_stride=stride).eval()
    # The same parameters (strides have no weights): a checkpoint only fits its stride
    # because the config says so (checkpoints.ARCHITECTURE_FIELDS).
    assert {k: v.shape for k, v in paper.state_dict().items()} == {
        k: v.shape for k, v in finer.state_dict().items()}
    out = finer(torch.rand(2, 1, *size))
    expected = tuple(math.ceil(n / stride) for n in size)
    assert feature_shape(size, stride) == expected
    assert out.cam.shape == (2, 1, *expected) and out.logit.shape == (2,)


def test_an_unknown_feature_stride_is_refused() -> None:
    with pytest.raises(ConfigError, match="feature stride"):
        DSANet(width=4, feature_stride=2)
    with pytest.raises(ConfigError, match="feature stride"):
        feature_shape((16, 16, 16), 32)


def test_resnet34_at_width_64_has_about_63_5_million_parameters() -> None:
    net = DSANet(width=64, in_channels=1)
    n_parameters = sum(p.numel() for p in net.parameters())
    assert n_parameters == pytest.approx(63.5e6, rel=0.005)
    assert net.fc.weight.shape == (1, 512)
    # The CAM has no weights of its own: every parameter is in a conv, BN or the fc.
    names = {name.rsplit(".", 1)[0] for name, _ in net.named_parameters()}
    assert not any("cam" in name or "attention" in name for name in names)


def test_last_stage_keeps_the_resolution() -> None:
    net = DSANet(width=4)
    last = net.stages[3][0]
    assert last.conv1.stride == (1, 1, 1)
    assert last.shortcut[0].stride == (1, 1, 1)  # the projection shortcut too
    assert [len(stage) for stage in net.stages] == [3, 4, 6, 3]


def _manual_cam_of(net: DSANet, f: torch.Tensor) -> torch.Tensor:
    return F.relu(torch.einsum("bcdhw,c->bdhw", f, net.fc.weight[0]))[:, None]


def _manual_cam(net: DSANet, x: torch.Tensor) -> torch.Tensor:
    return _manual_cam_of(net, net.features(x))


def test_cam_kernel_is_the_fc_weight_after_an_optimiser_step() -> None:
    torch.manual_seed(1)
    net = DSANet(width=4, layers=(1, 1, 1, 1))
    x = torch.rand(2, 1, 32, 32, 32)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    before = net.fc.weight.detach().clone()
    loss = F.binary_cross_entropy_with_logits(net(x).logit, torch.tensor([1.0, 0.0]))
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, net.fc.weight)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x).cam, _manual_cam(net, x))


def test_attention_loss_trains_the_backbone_but_not_the_fc() -> None:
    torch.manual_seed(2)
    net = DSANet(width=4, layers=(1, 1, 1, 1))
    x = torch.rand(2, 1, 32, 32, 32)
    out = net(x)
    assert out.cam.max() > 0 and out.cam.amax(dim=(2, 3, 4)).min() > out.cam.amin()
    soft = soft_attention(out.cam, x.shape[2:], alpha=10.0)
    mask = torch.zeros_like(soft)
    mask[:, :, 8:20, 8:20, 8:20] = 1
    attention_loss(soft, mask, torch.tensor([True, True])).backward()
    assert net.fc.weight.grad is None or not net.fc.weight.grad.any()
    assert net.fc.bias.grad is None or not net.fc.bias.grad.any()
    stem_grad = net.stem[0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0


def test_head_and_cam_are_float32_under_bf16_autocast() -> None:
    # CPU autocast stands in for CUDA's here (forward only: the same code path).
    torch.manual_seed(3)
    net = DSANet(width=4, layers=(1, 1, 1, 1)).eval()
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        f = net.features(x)
    assert f.dtype == torch.bfloat16  # the backbone does run in bf16
    assert out.logit.dtype == torch.float32 and out.cam.dtype == torch.float32
    torch.testing.assert_close(out.cam, _manual_cam_of(net, f.float()))
    expected = net.fc(f.float().mean(dim=(2, 3, 4))).squeeze(1)
    torch.testing.assert_close(out.logit, expected)


def test_bad_configuration_and_input_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="4 stages"):
        DSANet(width=4, layers=(3, 4, 6))
    with pytest.raises(ModelError, match=r"expected input \(batch, 1, z, y, x\)"):
        DSANet(width=4)(torch.rand(1, 2, 16, 16, 16))
