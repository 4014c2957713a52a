from __future__ import annotations

import math

import pytest
import torch

from dsan_core.classifier import attention_loss, soft_attention
from dsan_core.errors import ModelError

VALUES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.4, 0.1]


def _map(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2, 2)


def test_soft_mask_is_one_half_where_the_normalised_map_equals_beta() -> None:
    cam = _map(VALUES) * 3.0  # normalises back to VALUES
    soft = soft_attention(cam, (2, 2, 2), alpha=100.0, beta=0.4)
    assert soft.shape == (1, 1, 2, 2, 2) and soft.dtype == torch.float32
    flat = soft.flatten()
    assert flat[2].item() == pytest.approx(0.5) and flat[6].item() == pytest.approx(0.5)
    assert flat[5].item() == pytest.approx(1.0) and flat[0].item() == pytest.approx(0.0, abs=1e-12)
    assert flat[3].item() == pytest.approx(1 / (1 + math.exp(-100 * 0.2)))


def test_normalisation_is_per_sample_so_scaled_copies_agree() -> None:
    cam = torch.cat([_map(VALUES), 7.0 * _map(VALUES) + 2.0, 0.01 * _map(VALUES)])
    soft = soft_attention(cam, (4, 4, 6))
    assert soft.shape == (3, 1, 4, 4, 6)
    torch.testing.assert_close(soft[1], soft[0])
    torch.testing.assert_close(soft[2], soft[0])
    assert soft.min() >= 0 and soft.max() <= 1


@pytest.mark.parametrize("level", [0.0, 5.0])
def test_a_flat_map_gives_a_finite_soft_mask_and_gradient(level: float) -> None:
    cam = torch.full((2, 1, 2, 2, 2), level, requires_grad=True)
    soft = soft_attention(cam, (8, 8, 8), alpha=100.0, beta=0.4)
    assert torch.isfinite(soft).all()
    torch.testing.assert_close(soft, torch.full_like(soft, 1 / (1 + math.exp(40.0))))
    loss = attention_loss(soft, torch.zeros_like(soft), torch.tensor([1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and cam.grad is not None and torch.isfinite(cam.grad).all()


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    # Sample 0: sum (T - M)^2 = 0.25 + 0.25 + 1 = 1.5, sum T = 3, sum M = 2 -> 0.3.
    # Sample 1: T = 0.5 everywhere, M = 0 -> (8 * 0.25) / (4 + 0) = 0.5.
    t = torch.stack([_map([1, 0, 0.5, 0.5, 0, 0, 1, 0]), torch.full((1, 1, 2, 2, 2), 0.5)])
    m = torch.stack([_map([1, 0, 1, 0, 0, 0, 0, 0]), torch.zeros(1, 1, 2, 2, 2)])
    return t[:, 0], m[:, 0].to(torch.uint8)


@pytest.mark.parametrize(
    ("covid", "expected"),
    [([1, 0], 0.3), ([0, 1], 0.5), ([1, 1], 0.4), ([True, False], 0.3)],
)
def test_attention_loss_by_hand(covid: list[int], expected: float) -> None:
    t, m = _case()
    assert attention_loss(t, m, torch.tensor(covid)).item() == pytest.approx(expected)


def test_attention_loss_without_covid_is_exactly_zero_with_a_graph() -> None:
    t, m = _case()
    t = t.clone().requires_grad_(True)
    loss = attention_loss(t, m, torch.tensor([0, 0]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert t.grad is not None and not t.grad.any()


def test_attention_loss_of_a_perfect_mask_is_zero_and_of_empty_inputs_finite() -> None:
    t, m = _case()
    assert attention_loss(m.float(), m, torch.tensor([1, 1])).item() == 0.0
    zeros = torch.zeros(1, 1, 2, 2, 2)
    assert attention_loss(zeros, zeros, torch.tensor([1])).item() == 0.0


def test_attention_loss_checks_shapes() -> None:
    t, m = _case()
    with pytest.raises(ModelError, match="infection mask"):
        attention_loss(t, m[:, :, :1], torch.tensor([1, 0]))
    with pytest.raises(ModelError, match="one COVID flag per sample"):
        attention_loss(t, m, torch.tensor([1, 0, 1]))
