"""MINE: a neural lower bound on mutual information (Belghazi et al., 2018; LoRA-MER eqs. 9-13).

A statistics network T(x, z) scores pairs. The Donsker-Varadhan representation gives

    I(X; Z) >= E_joint[T(x, z)] - log E_marginal[exp(T(x, z'))]

where joint pairs are the batch's own (x_i, z_i) and marginal pairs (x_i, z_j), j != i, come from
shuffling z within the batch. `lower_bound` returns this bound in nats; training maximises it, so
the loss adds lambda * (-I) (LoRA-MER eq. 13; the paper's public code minimised a different term).

The minibatch gradient of the log term is biased (the denominator E[exp T] is estimated from one
batch); with `ema_decay` the denominator of that gradient is a moving average over batches
(Belghazi et al. sec. 3.2). The returned value is the plain DV bound either way.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MINE(nn.Module):
    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dim: int = 256,
        num_layers: int = 2,
        ema_decay: float | None = None,
    ):
        super().__init__()
        layers, width = [], x_dim + z_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        self.statistics = nn.Sequential(*layers, nn.Linear(width, 1))
        self.ema_decay = ema_decay
        # log of the moving average of E_marginal[exp T]; -inf until the first training batch
        self.register_buffer("log_ema", torch.tensor(float("-inf")))

    def T(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.statistics(torch.cat([x, z], dim=-1)).squeeze(-1)

    @staticmethod
    def shuffled(z: torch.Tensor) -> torch.Tensor:
        """z with every row moved to another row: a random single cycle, so no pair stays joint."""
        order = torch.randperm(z.shape[0], device=z.device)
        source = torch.empty_like(order)
        source[order] = order.roll(1)
        return z[source]

    def lower_bound(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The DV bound on I(X; Z) in nats, from one batch of paired rows x [B, dx], z [B, dz]."""
        joint = self.T(x, z).mean()
        marginal = self.T(x, self.shuffled(z))
        log_mean_exp = torch.logsumexp(marginal, dim=0) - math.log(marginal.shape[0])
        if self.ema_decay is None or not self.training:
            return joint - log_mean_exp
        with torch.no_grad():
            current = log_mean_exp.detach()
            if torch.isinf(self.log_ema):
                self.log_ema.copy_(current)
            else:  # log(decay * ema + (1 - decay) * current), computed in log space
                decay = self.ema_decay
                self.log_ema.copy_(
                    torch.logaddexp(self.log_ema + math.log(decay), current + math.log(1 - decay))
                )
        # Same value as log_mean_exp; gradient grad(E[e^T]) / ema instead of grad(E[e^T]) / E_batch[e^T].
        corrected = torch.exp(log_mean_exp - self.log_ema)
        return joint - (log_mean_exp.detach() + corrected - corrected.detach())
