"""train.class_weights: the loss weighs each class the same, as UA and macro-F1 do."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from emoscale.config import load_config
from emoscale.errors import ConfigError
from emoscale.models.class_weights import balanced_class_weights
from emoscale.train import prepare_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_for(overrides, *extra):
    """The family as training builds it (prepare_inputs sets the weights), and its corpus."""
    return prepare_inputs(load_config(overrides=overrides + list(extra)))


def test_balanced_weights_follow_scikit_learns_convention():
    # N / (K * n_k): 12 labels, 3 classes present -> 12 / (3 * 6), 12 / (3 * 4), 12 / (3 * 2)
    weights = balanced_class_weights([0] * 6 + [1] * 4 + [3] * 2, num_classes=4)
    torch.testing.assert_close(weights, torch.tensor([2 / 3, 1.0, 0.0, 2.0]))
    # a balanced split: every weight 1, the plain loss
    assert balanced_class_weights([0, 1, 2, 0, 1, 2], 3).tolist() == [1.0, 1.0, 1.0]
    # answers of 1 and 3 tokens, 6 examples each: 24 targets; each class's tokens weigh 12 in all
    weights = balanced_class_weights([0] * 6 + [1] * 6, 2, answer_lengths=[1, 3])
    torch.testing.assert_close(weights, torch.tensor([2.0, 2 / 3]))
    assert 6 * 1 * weights[0] == 6 * 3 * weights[1] == 12


@pytest.mark.parametrize("train_on_dev", [False, True])
def test_the_key_takes_the_weights_from_the_labels_that_train(fusion_overrides, train_on_dev):
    extra = ["data.train_on_dev=true", "eval.select=last"] if train_on_dev else []
    corpus, plain = family_for(fusion_overrides, *extra)
    assert plain.class_weights is None  # the papers' plain cross-entropy by default
    corpus, family = family_for(fusion_overrides, "train.class_weights=balanced", *extra)
    labels = [example.label for example in corpus.split("train")]
    assert len(labels) == 160 + (48 if train_on_dev else 0)  # dev's labels count when dev trains
    counts = Counter(labels)
    expected = [len(labels) / (len(counts) * counts[k]) for k in range(len(family.label_names))]
    torch.testing.assert_close(family.class_weights, torch.tensor(expected))


def test_prompt_lm_weights_count_each_labels_answer_tokens(run_overrides):
    corpus, family = family_for(run_overrides, "train.class_weights=balanced")
    labels = [example.label for example in corpus.split("train")]
    lengths = [len(answer) for answer in family.answers]
    expected = balanced_class_weights(labels, len(family.label_names), lengths)
    torch.testing.assert_close(family.class_weights, expected)
    # every class's answer tokens weigh the same in all
    counts = Counter(labels)
    totals = {k: counts[k] * lengths[k] * family.class_weights[k].item() for k in counts}
    assert max(totals.values()) == pytest.approx(min(totals.values()))


def test_fusion_loss_weighs_each_example_by_its_class_over_the_batch_size(fusion_overrides):
    corpus, family = family_for(fusion_overrides, "model.modalities=audio")
    model = family.build_model().eval()  # no dropout: every pass sees the same network
    batch = next(iter(family.dataloader(corpus.split("train")[:16], True, 0, "train")))
    assert len(set(batch["labels"].tolist())) > 1
    logits, _ = model(**{k: v for k, v in batch.items() if k not in ("labels", "example_index")})
    plain = family.loss(model, batch)
    family.class_weights = torch.ones(len(family.label_names))
    assert family.loss(model, batch).item() == pytest.approx(plain.item(), rel=1e-6)
    family.class_weights = torch.tensor([0.5, 3.0, 1.0, 2.0])[: len(family.label_names)]
    # torch's weighted sum, divided by the batch size (not by the sum of weights: that would
    # cancel the weights in a batch of one)
    expected = F.cross_entropy(
        logits, batch["labels"], weight=family.class_weights, reduction="sum"
    ) / len(batch["labels"])
    torch.testing.assert_close(family.loss(model, batch), expected)
    one = {key: value[:1] for key, value in batch.items()}  # a batch of one still weighs
    expected_one = family.class_weights[one["labels"][0]] * F.cross_entropy(
        logits[:1], one["labels"]
    )
    torch.testing.assert_close(family.loss(model, one), expected_one, rtol=1e-4, atol=1e-6)


def test_prompt_lm_loss_weighs_each_answer_token_by_its_examples_class(run_overrides):
    corpus, family = family_for(run_overrides, "model.method=lora")
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
    # weights of 1: the plain loss
    family.class_weights = torch.ones(len(family.label_names))
    assert family.loss(model, batch).item() == pytest.approx(plain.item(), rel=1e-6)
    # the reference: each example's answer tokens scored alone, weighted by its class, over the
    # number of answer tokens
    family.class_weights = torch.arange(1.0, len(family.label_names) + 1)
    logits, _, _ = model(batch["input_ids"], batch["attention_mask"])
    total = tokens = 0.0
    for row, example in enumerate(examples):
        targets = batch["targets"][row, 1:]
        answer = targets != -100
        token_losses = F.cross_entropy(
            logits[row, :-1][answer].float(), targets[answer], reduction="none"
        )
        total += family.class_weights[example.label].item() * token_losses.sum().item()
        tokens += int(answer.sum())
    assert family.loss(model, batch).item() == pytest.approx(total / tokens, rel=1e-5)


def test_unknown_choice_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["train.class_weights=inverse"])
    assert str(error.value) == (
        "config key 'train.class_weights': Input should be 'none' or 'balanced' (got 'inverse')"
    )
