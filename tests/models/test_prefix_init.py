"""P-Tuning v2's prefix initialised from the model's own keys/values (`ptuning.init=tokens`)."""

from __future__ import annotations

import json

import pytest
import torch

from emoscale import train
from emoscale.config import load_config
from emoscale.data.registry import load_corpus
from emoscale.models import build_family
from emoscale.models.prefix_init import repeat_to_length

VIRTUAL = 8


def family_and_model(run_overrides, *extra: str):
    config = load_config(overrides=run_overrides + list(extra))
    family = build_family(config, load_corpus(config.data))
    torch.manual_seed(0)
    return family, family.build_model().eval()


def eval_batch(family, count: int = 6) -> dict:
    examples = load_corpus(family.config.data).split("dev")[:count]
    return next(iter(family.dataloader(examples, train=False, seed=0, split="dev")))


def tokens_before_prompts(tokens: list[int], ids: torch.Tensor, mask: torch.Tensor, pad: int):
    """Left-padded rows of `tokens` + each prompt, and their mask."""
    pads = (mask == 0).sum(1).tolist()
    rows = [[pad] * n + tokens + row[n:].tolist() for n, row in zip(pads, ids, strict=True)]
    masks = [[0] * n + [1] * (len(row) - n) for n, row in zip(pads, rows, strict=True)]
    return torch.tensor(rows), torch.tensor(masks)


def test_repeat_to_length():
    assert repeat_to_length([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]
    assert repeat_to_length([1, 2, 3], 2) == [1, 2]


def test_prefix_from_tokens_reads_as_those_tokens_before_the_prompt(
    run_overrides, one_torch_thread
):
    """With the prefix made from tokens T, the prefixed model on prompt P gives the plain model's
    output on T + P, in both of emoscale's routes: the forward pass (training, generation) and
    one-pass label scoring. PEFT's random prefix does not (the test can fail)."""
    method = ["model.method=ptuning_v2", f"ptuning.num_virtual_tokens={VIRTUAL}"]
    family, prefixed = family_and_model(run_overrides, *method)
    _, plain = family_and_model(run_overrides, "model.method=none")
    tokens = repeat_to_length(family.prefix_init_ids(), VIRTUAL)
    batch = eval_batch(family)
    ids, mask = batch["input_ids"], batch["attention_mask"]  # left-padded prompts
    with torch.no_grad():
        logits, _, _ = prefixed(ids, mask)
        pad = family.tokenizer.pad_token_id
        joined, joined_mask = tokens_before_prompts(tokens, ids, mask, pad)
        expected, _, _ = plain(joined, joined_mask)
        real = mask.bool()
        assert torch.allclose(logits[real], expected[:, VIRTUAL:][real], atol=1e-4)
        scores = family.label_scores(prefixed, ids, mask)
        expected_scores = family.label_scores(plain, joined, joined_mask)
        assert torch.allclose(scores, expected_scores, atol=1e-4)
        _, random = family_and_model(run_overrides, *method, "ptuning.init=random")
        far = family.label_scores(random, ids, mask)
        assert (far - expected_scores).abs().max() > 100 * (scores - expected_scores).abs().max()


def test_init_text_is_the_prefix(run_overrides):
    family, _ = family_and_model(
        run_overrides, "model.method=ptuning_v2", "ptuning.init_text=great film , awful film ."
    )
    text_ids = family.tokenizer("great film , awful film .", add_special_tokens=False)["input_ids"]
    assert family.prefix_init_ids() == family.pieces.head + text_ids


@pytest.mark.slow
def test_ptuning_v2_learns_from_the_tokens_prefix(run_overrides, one_torch_thread):
    """A training test: P-Tuning v2 from the default prefix learns the demo's three-way task
    (chance 1/3) on the frozen random tiny model (the real model's run: README, issue 14)."""
    overrides = run_overrides + [
        "model.method=ptuning_v2",
        "ptuning.num_virtual_tokens=16",
        "train.lr=1e-1",
        "train.max_steps=200",
        "eval.every_steps=200",
    ]
    run_dir, metrics = train.run(load_config(overrides=overrides))
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    losses = [row["train_loss"] for row in history if "train_loss" in row]
    assert losses[-1] < 0.25 * losses[0], losses
    assert metrics["test"]["accuracy"] > 0.45, metrics["test"]  # measured 0.55


def test_prefix_from_tokens_on_chatglm2s_architecture():
    """ChatGLM2-6B's shape in transformers (GlmForCausalLM): 2 key/value groups, rotary on half of
    each head; the prefixed model on P is still the plain model on T + P."""
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import GlmConfig, GlmForCausalLM

    from emoscale.models.prefix_init import init_prefix_from_tokens
    from emoscale.models.prompted_lm import PromptedLM

    torch.manual_seed(0)
    config = GlmConfig(
        vocab_size=100,
        pad_token_id=0,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        partial_rotary_factor=0.5,
    )
    base = GlmForCausalLM(config).eval()
    prefixed = PromptedLM(
        get_peft_model(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    )
    tokens, prompt = [3, 4, 5], torch.tensor([[10, 11, 12, 13]])
    init_prefix_from_tokens(prefixed.lm, tokens)  # repeated to 5: 3 4 5 3 4
    with torch.no_grad():
        logits, _, _ = prefixed(prompt, torch.ones_like(prompt))
        expected = base(torch.tensor([[3, 4, 5, 3, 4, *prompt[0].tolist()]])).logits[:, 5:]
    assert torch.allclose(logits, expected, atol=1e-5)
