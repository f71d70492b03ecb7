"""train.class_weights: the loss weighs each class the same, as UA and macro-F1 do."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.errors import ConfigError
from emoscale.models import build_family
from emoscale.models.class_weights import balanced_class_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_for(overrides, *extra):
    config = load_config(overrides=overrides + list(extra))
    corpus = load_corpus(config.data)
    return build_family(config, corpus), corpus


def test_balanced_weights_follow_scikit_learns_convention():
    # N / (K * n_k): 12 labels, 3 classes present -> 12 / (3 * 6), 12 / (3 * 4), 12 / (3 * 2)
    weights = balanced_class_weights([0] * 6 + [1] * 4 + [3] * 2, num_classes=4)
    torch.testing.assert_close(weights, torch.tensor([2 / 3, 1.0, 0.0, 2.0]))
    # a balanced split: every weight 1, the plain loss
    assert balanced_class_weights([0, 1, 2, 0, 1, 2], 3).tolist() == [1.0, 1.0, 1.0]


def test_the_key_takes_the_weights_from_the_labels_that_train(fusion_overrides):
    plain, _ = family_for(fusion_overrides)
    assert plain.class_weights is None  # the papers' plain cross-entropy by default
    family, corpus = family_for(fusion_overrides, "train.class_weights=balanced")
    labels = [example.label for example in corpus.split("train")]
    counts = Counter(labels)
    expected = [len(labels) / (len(counts) * counts[k]) for k in range(len(family.label_names))]
    torch.testing.assert_close(family.class_weights, torch.tensor(expected))


def test_fusion_loss_is_torchs_weighted_cross_entropy(fusion_overrides):
    family, corpus = family_for(
        fusion_overrides, "model.modalities=audio", "train.class_weights=balanced"
    )
    family.class_weights = torch.tensor([0.5, 3.0, 1.0, 2.0])[: len(family.label_names)]
    model = family.build_model().eval()  # no dropout: both passes see the same network
    batch = next(iter(family.dataloader(corpus.split("train")[:16], True, 0, "train")))
    assert len(set(batch["labels"].tolist())) > 1
    logits, _ = model(**{k: v for k, v in batch.items() if k not in ("labels", "example_index")})
    expected = F.cross_entropy(logits, batch["labels"], weight=family.class_weights)
    torch.testing.assert_close(family.loss(model, batch), expected)


def test_prompt_lm_loss_weighs_each_answer_token_by_its_examples_class(run_overrides):
    family, corpus = family_for(run_overrides, "model.method=lora")
    model = family.build_model().eval()
    examples = corpus.split("train")[:8]
    items = [
        {"prompt": family.prompt_ids(e.text), "answer": family.answers[e.label], "label": e.label,
         "index": i}
        for i, e in enumerate(examples)
    ]  # fmt: skip
    batch = family._collate_train(items)
    assert len({e.label for e in examples}) > 1
    plain = family.loss(model, batch)
    # weights of 1: the plain loss, exactly
    family.class_weights = torch.ones(len(family.label_names))
    assert family.loss(model, batch).item() == pytest.approx(plain.item(), rel=1e-6)
    # the reference: each example's answer tokens scored alone, weighted by its class
    family.class_weights = torch.arange(1.0, len(family.label_names) + 1)
    logits, _, _ = model(batch["input_ids"], batch["attention_mask"])
    total = weight_sum = 0.0
    for row, example in enumerate(examples):
        targets = batch["targets"][row, 1:]
        answer = targets != -100
        token_losses = F.cross_entropy(
            logits[row, :-1][answer].float(), targets[answer], reduction="none"
        )
        weight = family.class_weights[example.label].item()
        total += weight * token_losses.sum().item()
        weight_sum += weight * int(answer.sum())
    assert family.loss(model, batch).item() == pytest.approx(total / weight_sum, rel=1e-5)


def test_unknown_choice_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["train.class_weights=inverse"])
    assert str(error.value) == (
        "config key 'train.class_weights': Input should be 'none' or 'balanced' (got 'inverse')"
    )
