"""AT-Fusion (LoRA-MER eqs. 2-4): a per-utterance convex combination of the two modality vectors."""

from __future__ import annotations

import torch

from emoscale.models.fusion import ATFusion, classifier


def test_starts_from_equal_weights():
    torch.manual_seed(0)
    fusion = ATFusion(dim=8)
    f_a, f_t = torch.randn(3, 8), torch.randn(3, 8)
    h, alpha = fusion(f_a, f_t)
    torch.testing.assert_close(alpha, torch.full((3, 2), 0.5))
    torch.testing.assert_close(h, (f_a + f_t) / 2)


def test_weights_are_a_softmax_over_modalities_and_h_their_mix():
    torch.manual_seed(0)
    fusion = ATFusion(dim=8, attention_dim=5)
    torch.nn.init.normal_(fusion.w.weight)
    f_a, f_t = torch.randn(4, 8), torch.randn(4, 8)
    h, alpha = fusion(f_a, f_t)
    scores = torch.stack(
        [fusion.w(torch.tanh(fusion.W(f))).squeeze(-1) for f in (f_a, f_t)], dim=-1
    )  # w^T tanh(W f) for each column of f_cat
    torch.testing.assert_close(alpha, scores.softmax(-1))
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4))
    torch.testing.assert_close(h, alpha[:, :1] * f_a + alpha[:, 1:] * f_t)
    assert not torch.allclose(alpha[0], alpha[1])  # the weights depend on the utterance


def test_classifier_maps_to_label_logits():
    head = classifier(dim=8, hidden=16, num_labels=4, dropout=0.1)
    assert head(torch.randn(5, 8)).shape == (5, 4)
