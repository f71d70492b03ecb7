"""Frame or token features -> one utterance vector f in R^D (LoRA-MER eq. 1).

A pointwise Conv1D maps the encoder's width to D channels; attentive statistics pooling (Okabe et
al., 2018) then weights the frames, takes the weighted mean and standard deviation, and a linear
layer projects [mean, std] (2D) back to D. Padding never enters: its attention weight is zero.

`attentive=False` (`fusion.pooling: mean_std`, not the paper's) gives every real frame the same
weight: plain statistics pooling, the same layers without the attention scorer.
`layers=False` (`fusion.pooling_layers: false`, not the paper's) drops the Conv1D and the
projection: f is [mean, std] of the encoder's own frames, 2 x its width (`output_dim`), as in a
plain statistics-pooling baseline (issue 15: a small encoder trained from scratch on EmoDB).
"""

from __future__ import annotations

import torch
from torch import nn


class AttentiveStatsPooling(nn.Module):
    def __init__(
        self,
        in_dim: int,
        dim: int = 256,
        attention_dim: int = 128,
        attentive: bool = True,
        layers: bool = True,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, dim, kernel_size=1) if layers else None
        width = dim if layers else in_dim  # the statistics' width
        # Okabe et al. eq. 1: e_t = v^T f(W h_t + b) + k, with f = tanh
        self.attention = (
            nn.Sequential(nn.Linear(width, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))
            if attentive
            else None
        )
        self.project = nn.Linear(2 * dim, dim) if layers else None
        self.output_dim = dim if layers else 2 * in_dim

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features [B, T, in_dim], mask [B, T] (true/1 = real) -> f [B, output_dim]."""
        hidden = features
        if self.conv is not None:
            hidden = self.conv(features.transpose(1, 2)).transpose(1, 2)  # [B, T, D]
        scores = (
            self.attention(hidden).squeeze(-1)
            if self.attention is not None
            else hidden.new_zeros(hidden.shape[:2])  # equal weights: mean and std of real frames
        ).masked_fill(~mask.bool(), float("-inf"))
        weights = scores.softmax(dim=-1).unsqueeze(-1)  # [B, T, 1]; Okabe eq. 2
        mean = (weights * hidden).sum(dim=1)  # eq. 3
        # eq. 4, clamped as in the paper
        variance = (weights * hidden * hidden).sum(dim=1) - mean * mean
        std = variance.clamp(min=1e-5).sqrt()
        statistics = torch.cat([mean, std], dim=-1)
        return self.project(statistics) if self.project is not None else statistics
