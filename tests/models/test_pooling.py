"""Attentive statistics pooling: padding never counts, and the statistics are the weighted ones."""

from __future__ import annotations

import torch

from emoscale.models.pooling import AttentiveStatsPooling


def test_padding_does_not_change_the_vector():
    torch.manual_seed(0)
    pool = AttentiveStatsPooling(in_dim=12, dim=16, attention_dim=8).eval()
    clip = torch.randn(1, 7, 12)
    padded = torch.cat([clip, 100 * torch.randn(1, 5, 12)], dim=1)  # loud garbage where masked
    mask = torch.tensor([[1] * 7 + [0] * 5])
    alone = pool(clip, torch.ones(1, 7, dtype=torch.long))
    torch.testing.assert_close(pool(padded, mask), alone)
    assert alone.shape == (1, 16)


def test_uniform_attention_gives_mean_and_standard_deviation():
    torch.manual_seed(0)
    pool = AttentiveStatsPooling(in_dim=4, dim=6, attention_dim=3)
    torch.nn.init.zeros_(pool.attention[-1].weight)  # equal scores: plain mean and (biased) std
    captured = {}
    pool.project.register_forward_hook(lambda module, inputs, output: captured.update(x=inputs[0]))
    features = torch.randn(2, 9, 4)
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    pool(features, mask)
    hidden = pool.conv(features.transpose(1, 2)).transpose(1, 2)
    for row, length in enumerate((9, 5)):
        frames = hidden[row, :length]
        expected = torch.cat([frames.mean(0), frames.std(0, unbiased=False)])
        torch.testing.assert_close(captured["x"][row], expected, rtol=1e-4, atol=1e-4)


def test_mean_std_pooling_weights_real_frames_equally():
    """fusion.pooling=mean_std: the same layers without the scorer, padding still left out."""
    torch.manual_seed(0)
    pool = AttentiveStatsPooling(in_dim=4, dim=6, attentive=False)
    assert pool.attention is None
    captured = {}
    pool.project.register_forward_hook(lambda module, inputs, output: captured.update(x=inputs[0]))
    features = torch.randn(2, 9, 4)
    features[1, 5:] = 100.0  # loud padding
    pool(features, torch.tensor([[1] * 9, [1] * 5 + [0] * 4]))
    hidden = pool.conv(features.transpose(1, 2)).transpose(1, 2)
    for row, length in enumerate((9, 5)):
        frames = hidden[row, :length]
        expected = torch.cat([frames.mean(0), frames.std(0, unbiased=False)])
        torch.testing.assert_close(captured["x"][row], expected, rtol=1e-4, atol=1e-4)


def test_pooling_without_layers_is_mean_and_std_of_the_encoders_own_frames():
    """fusion.pooling_layers=false: no Conv1D, no projection; f = [mean, std] of real frames."""
    torch.manual_seed(0)
    pool = AttentiveStatsPooling(in_dim=4, dim=6, attentive=False, layers=False)
    assert pool.conv is None and pool.project is None and pool.output_dim == 8
    assert not list(pool.parameters())
    features = torch.randn(2, 9, 4)
    features[1, 5:] = 100.0  # loud padding
    pooled = pool(features, torch.tensor([[1] * 9, [1] * 5 + [0] * 4]))
    for row, length in enumerate((9, 5)):
        frames = features[row, :length]
        expected = torch.cat([frames.mean(0), frames.std(0, unbiased=False)])
        torch.testing.assert_close(pooled[row], expected, rtol=1e-4, atol=1e-4)
