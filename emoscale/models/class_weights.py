"""Class weights for the training loss (`train.class_weights`).

UA and macro-F1, the papers' headline metrics on imbalanced corpora (MELD's neutral is 47% of its
training utterances), weigh every class the same; plain cross-entropy weighs every example the same.
"balanced" gives class k the weight N / (K * n_k) over the training labels (scikit-learn's
`compute_class_weight("balanced")`): 1 for every class of a balanced split.
"""

from __future__ import annotations

from collections import Counter

import torch


def balanced_class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """[num_classes] weights; a class without training examples gets 0 (it is never a target)."""
    counts = Counter(labels)
    total = len(labels)
    present = len(counts)
    return torch.tensor(
        [total / (present * counts[k]) if counts[k] else 0.0 for k in range(num_classes)]
    )


def training_class_weights(config, corpus) -> torch.Tensor | None:
    """The loss's class weights for this run (`train.class_weights`), from the labels of the
    examples that train (with `data.train_on_dev`, dev's too); None: plain cross-entropy."""
    if config.train.class_weights == "none":
        return None
    labels = [example.label for example in corpus.split("train")]
    return balanced_class_weights(labels, len(corpus.info.label_names))


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * loss) / sum(w), torch's `cross_entropy(weight=...)` reduction: the loss per
    weight, so a batch of rare classes does not take a larger step than one of common classes."""
    return (losses * weights).sum() / weights.sum()
