from __future__ import annotations

import numpy as np
import pytest
import torch

from dsan_core.classifier import DSANet, grad_cam, normalise_per_sample
from dsan_core.classifier.attention import upsample_cam
from dsan_core.classifier.faithfulness import deletion_drop

torch.set_num_threads(1)


def _net() -> DSANet:
    torch.manual_seed(4)
    return DSANet(width=4, layers=(1, 1, 1, 1)).eval()


def test_grad_cam_shape_range_and_no_parameter_gradients() -> None:
    net = _net()
    x = torch.rand(2, 1, 20, 36, 40)
    maps = grad_cam(net, x)
    assert maps.shape == (2, 1, 20, 36, 40) and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(p.grad is None for p in net.parameters())
    assert not maps.requires_grad


def test_grad_cam_equals_the_normalised_cam_for_a_pooled_linear_head() -> None:
    net = _net()
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        cam = normalise_per_sample(upsample_cam(net(x).cam, x.shape[2:]))
    torch.testing.assert_close(grad_cam(net, x), cam, atol=1e-5, rtol=1e-5)


def test_deletion_drop_compares_the_scan_with_its_top_voxels_removed() -> None:
    net = _net()
    image = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    ranking = np.arange(image.size, dtype=np.float32).reshape(image.shape)
    drop = deletion_drop(net, image, ranking, fraction=0.25, device=torch.device("cpu"))
    assert -1 <= drop <= 1 and drop != 0
    with torch.no_grad():
        deleted = image.copy()
        deleted.ravel()[-image.size // 4:] = 0
        probs = torch.sigmoid(net(torch.from_numpy(np.stack([image, deleted]))[:, None]).logit)
    assert drop == pytest.approx(float(probs[0] - probs[1]), abs=1e-6)
