"""MINE against the closed-form mutual information of correlated Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from emoscale.models.mine import MINE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def correlated_gaussians(n: int, dim: int, rho: float, generator: torch.Generator):
    """x ~ N(0, I), z = rho x + sqrt(1 - rho^2) noise: I(X; Z) = -dim/2 * log(1 - rho^2) nats."""
    x = torch.randn(n, dim, generator=generator)
    z = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=generator)
    return x, z


def fit_and_estimate(dim: int, rho: float, ema_decay: float | None, steps: int = 500) -> float:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    mine = MINE(dim, dim, hidden_dim=64, ema_decay=ema_decay)
    optimizer = torch.optim.Adam(mine.parameters(), lr=3e-3)
    for _ in range(steps):
        x, z = correlated_gaussians(256, dim, rho, generator)
        loss = -mine.lower_bound(x, z)  # the bound is maximised
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mine.eval()
    with torch.no_grad():  # held-out samples, a large batch: little estimation noise
        x, z = correlated_gaussians(20_000, dim, rho, generator)
        return mine.lower_bound(x, z).item()


@pytest.mark.parametrize(
    ("dim", "rho", "ema_decay"),
    [(2, 0.8, 0.99), (2, 0.8, None), (4, 0.5, 0.99), (2, 0.0, 0.99)],
)
def test_lower_bound_approaches_the_true_mutual_information(dim, rho, ema_decay):
    truth = -dim / 2 * math.log(1 - rho**2)  # 1.022, 1.022, 0.575, 0 nats
    estimate = fit_and_estimate(dim, rho, ema_decay)
    assert estimate <= truth + 0.03  # a lower bound: never above the truth beyond sampling noise
    assert estimate >= truth - 0.1  # and after fitting, close to it


def test_moving_average_changes_the_gradient_not_the_value():
    torch.manual_seed(0)
    x, z = torch.randn(64, 3), torch.randn(64, 3)
    plain, corrected = MINE(3, 3, 16), MINE(3, 3, 16, ema_decay=0.9)
    corrected.load_state_dict(plain.state_dict())
    corrected.log_ema.fill_(math.log(2.0))  # a moving average of E[e^T] = 2 from earlier batches

    torch.manual_seed(1)
    plain_value = plain.lower_bound(x, z)
    torch.manual_seed(1)
    corrected_value = corrected.lower_bound(x, z)
    assert corrected_value.item() == pytest.approx(plain_value.item(), abs=1e-6)

    # Expected gradient: grad E_joint[T] - grad E_marginal[e^T] / ema, with ema updated by this batch.
    torch.manual_seed(1)
    z_marginal = MINE.shuffled(z)
    joint = corrected.T(x, z).mean()
    mean_exp = corrected.T(x, z_marginal).exp().mean()
    ema = 0.9 * 2.0 + 0.1 * mean_exp.item()
    expected = torch.autograd.grad(joint - mean_exp / ema, corrected.statistics[0].weight)[0]
    actual = torch.autograd.grad(corrected_value, corrected.statistics[0].weight)[0]
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6)
    assert corrected.log_ema.exp().item() == pytest.approx(ema, rel=1e-5)


def test_marginal_pairs_never_keep_their_own_partner():
    torch.manual_seed(0)
    z = torch.arange(16.0)[:, None]
    for _ in range(20):
        shuffled = MINE.shuffled(z)
        assert sorted(shuffled.squeeze(1).tolist()) == z.squeeze(1).tolist()  # a permutation
        assert not (shuffled == z).any()  # with no fixed point
