"""AT-Fusion (LoRA-MER eqs. 2-4) and the classifier on the fused vector.

The two utterance vectors are the columns of f_cat = [f_a, f_t] in R^{D x 2}; one attention score
per modality, alpha = softmax(w^T tanh(W f_cat)) in R^{1 x 2}, weights them: h = f_cat alpha^T in R^D.
The weights depend on the utterance, so a clip with an uninformative transcript can lean on audio.
"""

from __future__ import annotations

import torch
from torch import nn


class ATFusion(nn.Module):
    def __init__(self, dim: int, attention_dim: int | None = None):
        super().__init__()
        attention_dim = attention_dim or dim
        self.W = nn.Linear(dim, attention_dim, bias=False)  # eq. 3: no bias inside the tanh
        self.w = nn.Linear(attention_dim, 1, bias=False)
        # Start from equal weights (h = the mean of f_a and f_t): with random w, one modality's weight
        # can start near 0 and its pooling then learns slowly, as it gets alpha times the gradient.
        nn.init.zeros_(self.w.weight)

    def forward(self, f_a: torch.Tensor, f_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_a, f_t [B, D] -> (h [B, D], alpha [B, 2]: the audio and text weights)."""
        f_cat = torch.stack([f_a, f_t], dim=-1)  # [B, D, 2], eq. 2
        scores = self.w(torch.tanh(self.W(f_cat.transpose(1, 2)))).squeeze(-1)  # [B, 2]
        alpha = scores.softmax(dim=-1)  # eq. 3
        h = (f_cat @ alpha.unsqueeze(-1)).squeeze(-1)  # eq. 4
        return h, alpha


def classifier(
    dim: int, hidden: int, num_labels: int, dropout: float, layers: int = 2
) -> nn.Sequential:
    """Linear layers on h; the logits feed a cross-entropy loss. `layers` (fusion.classifier_layers):
    2 = one hidden ReLU layer, 1 = dropout then a single linear layer (`hidden` unused)."""
    if layers == 1:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_labels))
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels)
    )
