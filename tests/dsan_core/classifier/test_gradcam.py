from __future__ import annotations

import numpy as np
import pytest
import torch

from dsan_core.classifier import DSANet, grad_cam, normalise_per_sample
from dsan_core.classifier.attention import upsample_cam
from dsan_core.classifier.faithfulness import deletion_drop, deletion_test

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


def _probability(net: DSANet, volume: np.ndarray) -> float:
    with torch.no_grad():
        return float(torch.sigmoid(net(torch.from_numpy(volume)[None, None]).logit)[0])


def test_deletion_test_deletes_the_maps_top_lung_voxels_and_a_seeded_random_control() -> None:
    net = _net()
    image = np.random.default_rng(1).random((16, 16, 16)).astype(np.float32)
    lung = np.zeros(image.shape, dtype=np.uint8)
    lung[:, :8] = 1  # 2048 voxels: 5 % is 102
    ranking = np.arange(image.size, dtype=np.float32).reshape(image.shape)
    result = deletion_test(net, image, ranking, lung, fraction=0.05,
                           rng=np.random.default_rng(3), device=torch.device("cpu"),
                           mixed_precision=False)
    assert result.n_deleted == 102
    inside = np.flatnonzero(lung)
    top = image.copy()
    top.ravel()[inside[-102:]] = 0  # the ranking's largest values inside the lung
    random = image.copy()
    random.ravel()[np.random.default_rng(3).choice(inside, size=102, replace=False)] = 0
    p = _probability(net, image)
    assert result.drop == pytest.approx(p - _probability(net, top), abs=1e-5)
    assert result.random_drop == pytest.approx(p - _probability(net, random), abs=1e-5)
    assert result.drop != result.random_drop


def test_deletion_test_of_an_empty_region_is_undefined() -> None:
    image = np.ones((16, 16, 16), dtype=np.float32)
    result = deletion_test(_net(), image, image, np.zeros(image.shape), fraction=0.05,
                           rng=np.random.default_rng(0), device=torch.device("cpu"))
    assert np.isnan(result.drop) and np.isnan(result.random_drop) and result.n_deleted == 0
