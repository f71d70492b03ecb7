"""Class weights for the training loss (`train.class_weights`).

UA and macro-F1, the papers' headline metrics on imbalanced corpora (MELD's neutral is 47% of its
training utterances), weigh every class the same; plain cross-entropy weighs every example the same.
"balanced" gives class k the weight N / (K * n_k) over the N training labels of the K classes
present (scikit-learn's `compute_class_weight("balanced")`): 1 for every class of a balanced split.
"""

from __future__ import annotations

from collections import Counter

import torch


def balanced_class_weights(
    labels: list[int], num_classes: int, answer_lengths: list[int] | None = None
) -> torch.Tensor:
    """[num_classes] weights of one training target of each class; a class without training
    examples gets 0 (it is never a target). With `answer_lengths` (the prompt LM: each of a
    label's L_k answer tokens is a target), T / (K * n_k * L_k) with T = sum n_k L_k targets, so a
    class of two-token answers does not weigh twice a class of one-token answers. Either way each
    class's targets weigh T / K in all, and the mean weight of a training target is 1."""
    lengths = answer_lengths or [1] * num_classes
    counts = Counter(labels)
    targets = sum(counts[k] * lengths[k] for k in counts)
    return torch.tensor(
        [
            targets / (len(counts) * counts[k] * lengths[k]) if counts[k] else 0.0
            for k in range(num_classes)
        ]
    )


def training_class_weights(config, corpus, answers: list | None = None) -> torch.Tensor | None:
    """The loss's class weights for this run (`train.class_weights`), from the labels of the
    examples that train (with `data.train_on_dev`, dev's too); `answers`: the prompt LM's answer
    tokens per label. None: plain cross-entropy."""
    if config.train.class_weights == "none":
        return None
    labels = [example.label for example in corpus.split("train")]
    lengths = [len(answer) for answer in answers] if answers is not None else None
    return balanced_class_weights(labels, len(corpus.info.label_names), lengths)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor, targets: int | torch.Tensor):
    """sum(w * loss) / the number of targets (scikit-learn's and Keras' sample weighting), not
    torch's `cross_entropy(weight=...)`, which divides by sum(w) in each batch: that cancels
    the weights in small batches (exactly, in a batch of one) and in each rank's and each
    accumulated micro-batch's share. The mean weight is 1, so the loss keeps the plain scale."""
    return (losses * weights).sum() / targets
