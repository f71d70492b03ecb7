"""Label scoring: always a valid label, independent of padding side, equal to scoring one by one."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from emoscale.config import load_config
from emoscale.data import chsims, load_corpus
from emoscale.data.examples import CorpusInfo
from emoscale.errors import ConfigError
from emoscale.models import build_family
from emoscale.models.label_scoring import supports_custom_masks
from emoscale.models.prompt_lm import PromptLMFamily
from emoscale.models.prompted_lm import PromptedLM


def make_family(run_overrides, *extra):
    config = load_config(overrides=run_overrides + list(extra))
    corpus = load_corpus(config.data)
    return build_family(config, corpus), corpus


def test_label_list_follows_the_paper_prompt(run_overrides):
    family, corpus = make_family(run_overrides)
    prompt = family.tokenizer.decode(family.prompt_ids(corpus.split("dev")[0].text))
    assert prompt.startswith(
        "Classify the sentiment of the sentence to Positive, Negative or Neutral: "
    )


def test_scores_are_padding_invariant_and_never_invalid(run_overrides):
    family, corpus = make_family(run_overrides, "model.method=none")
    model = family.build_model().eval()
    items = [
        {"prompt": family.prompt_ids(e.text), "label": e.label, "index": i}
        for i, e in enumerate(corpus.split("dev")[:12])
    ]
    assert len({len(item["prompt"]) for item in items}) > 1  # the batch really needs padding
    with torch.no_grad():
        left = family._collate_eval(items, left=True)
        right = family._collate_eval(items, left=False)
        left_scores = family.label_scores(model, left["input_ids"], left["attention_mask"])
        right_scores = family.label_scores(model, right["input_ids"], right["attention_mask"])
        alone = torch.cat(
            [
                family.label_scores(
                    model,
                    torch.tensor([item["prompt"]]),
                    torch.ones(1, len(item["prompt"]), dtype=torch.long),
                )
                for item in items
            ]
        )
    torch.testing.assert_close(left_scores, right_scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(left_scores, alone, atol=1e-4, rtol=0)
    predictions, _ = family.predict(model, left)
    assert set(predictions.tolist()) <= {0, 1, 2}


# Answers of 3, 9 and 17 tokens (with EOS) under the tiny tokenizer: every answer puts several
# tokens into the one-pass row, so causality inside an answer and the blocks' lengths both count.
UNEVEN_LABELS = "prompt.labels=[no,quite positive overall,mixed feelings of the movie and the cast]"


@pytest.mark.parametrize(
    "method, attention",
    [("lora", "sdpa"), ("lora", "eager"), ("ptuning_v2", "sdpa"), ("prompt_tuning", "eager"),
     ("p_tuning", "sdpa"), ("none", "sdpa")],
)  # fmt: skip
def test_both_scoring_routes_give_the_log_likelihood_of_each_answer(
    run_overrides, method, attention
):
    """The block-causal single pass and the KV-cache continuation both equal the (length-
    normalised) log-likelihood of prompt + answer run alone and unpadded, for every way virtual
    tokens enter the model, under both attention implementations that take a custom mask, for
    left- and right-padded batches and a batch of one."""
    family, corpus = make_family(
        run_overrides, f"model.method={method}", UNEVEN_LABELS, "prompt.length_normalize=true"
    )
    assert sorted(len(answer) for answer in family.answers) == [3, 9, 17]
    model = family.build_model().eval()
    base = model.lm.get_base_model() if method != "none" else model.lm
    base.set_attn_implementation(attention)
    assert base.config._attn_implementation == attention
    if method == "lora":  # PEFT starts LoRA at zero: move it so the adapter changes the scores
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.data.normal_(0, 0.5)
    items = [
        {"prompt": family.prompt_ids(e.text), "label": e.label, "index": i}
        for i, e in enumerate(corpus.split("dev")[:6])
    ]
    with torch.no_grad():
        reference = torch.tensor(
            [[_alone(model, item["prompt"], answer) for answer in family.answers] for item in items]
        )
        for left in (True, False):
            ids, mask = _inputs(family, items, left)
            for one_pass in (True, False):
                scores = family.label_scores(model, ids, mask, one_pass=one_pass)
                torch.testing.assert_close(scores, reference, atol=1e-4, rtol=0)
        ids, mask = _inputs(family, items[:1], True)
        torch.testing.assert_close(
            family.label_scores(model, ids, mask, one_pass=True), reference[:1], atol=1e-4, rtol=0
        )
        if method != "none":
            with model.lm.disable_adapter():
                plain = family.label_scores(PromptedLM(base), *_inputs(family, items, True))
            assert (reference - plain).abs().max() > 1e-2  # the adapter or virtual tokens took part


def _alone(model, prompt: list[int], answer: list[int]) -> float:
    """Mean log-probability of `answer` after `prompt`: one unpadded causal pass (the training path)."""
    sequence = torch.tensor([prompt + answer])
    logits, _, _ = model(sequence, torch.ones_like(sequence))
    log_probs = logits[0].float().log_softmax(-1)
    return sum(log_probs[len(prompt) - 1 + i, t].item() for i, t in enumerate(answer)) / len(answer)


def test_one_pass_only_where_a_custom_mask_is_exact():
    """Sliding windows shorter than the row, ALiBi and non-attention layers take the KV-cache route."""
    from transformers import AutoModelForCausalLM, BloomConfig, LlamaConfig, MistralConfig

    shape = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=64)  # fmt: skip

    def build(config, attention="sdpa"):
        return AutoModelForCausalLM.from_config(config, attn_implementation=attention)

    assert supports_custom_masks(build(LlamaConfig(**shape)), 100_000)
    mistral = build(MistralConfig(**shape, sliding_window=8))
    assert supports_custom_masks(mistral, 8) and not supports_custom_masks(mistral, 9)
    bloom = BloomConfig(hidden_size=16, n_layer=2, n_head=2, vocab_size=64)
    assert not supports_custom_masks(build(bloom, "eager"), 4)
    hybrid = build(LlamaConfig(**shape))
    hybrid.config.layer_types = ["full_attention", "linear_attention"]  # as Qwen3-Next declares
    assert not supports_custom_masks(hybrid, 4)


def _inputs(family, items, left):
    batch = family._collate_eval(items, left=left)
    return batch["input_ids"], batch["attention_mask"]


def test_scores_are_the_log_likelihood_of_the_answer(run_overrides):
    """Label scores equal scoring prompt + answer in one plain forward pass of the bare LM."""
    family, corpus = make_family(run_overrides, "model.method=none")
    model = family.build_model().eval()
    prompt = family.prompt_ids(corpus.split("dev")[0].text)
    with torch.no_grad():
        scores = family.label_scores(
            model, torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long)
        )
        for label, answer in enumerate(family.answers):
            sequence = torch.tensor([prompt + answer])
            logits = model.lm(sequence).logits.log_softmax(-1)[0]
            expected = sum(logits[len(prompt) - 1 + i, token] for i, token in enumerate(answer))
            assert abs(scores[0, label].item() - expected.item()) < 1e-4


def test_generated_answers_parse_to_labels(run_overrides):
    family, _ = make_family(run_overrides)
    assert family.parse_answer(" Positive") == 0
    assert family.parse_answer("neutral.") == 2
    assert family.parse_answer("Negative, clearly") == 1
    assert family.parse_answer("no idea") == -1


def write_dialogue_corpus(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        ("d1", 0, "Ross", "the movie was dull.", "negative"),
        ("d1", 1, "Rachel", "the cast was lovely.", "positive"),
        ("d1", 2, "Ross", "the plot was in english.", "neutral"),
        ("d1", 3, "Rachel", "the ending was awful.", "negative"),
    ]
    for split in ("train", "dev", "test"):
        lines = ["dialogue_id,turn,speaker,text,label"] + [",".join(map(str, row)) for row in rows]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_context_turns_show_only_earlier_turns_of_the_dialogue(run_overrides, tmp_path):
    corpus_dir = write_dialogue_corpus(tmp_path / "dialogues")
    family, corpus = make_family(run_overrides, f"data.path={corpus_dir}", "prompt.context_turns=2")
    prompts = [
        family.tokenizer.decode(ids)
        for ids in (
            family.prompt_ids(e.text, "dev", c)
            for e, c in zip(corpus.split("dev"), family.contexts(corpus.split("dev")), strict=True)
        )
    ]
    assert prompts[0].startswith("Classify the sentiment")  # the first turn has no context
    third = prompts[2]
    assert "Ross: the movie was dull." in third and "Rachel: the cast was lovely." in third
    assert "the ending was awful" not in third  # never a later utterance
    assert third.index("Rachel: the cast") < third.index("Classify the sentiment")
    # A budget drops the oldest lines first.
    family, corpus = make_family(
        run_overrides,
        f"data.path={corpus_dir}",
        "prompt.context_turns=2",
        "prompt.context_max_tokens=12",
    )
    assert [len(c) for c in family.contexts(corpus.split("dev"))] == [0, 1, 1, 1]
    assert family.contexts(corpus.split("dev"))[2] == ["Rachel: the cast was lovely."]


def test_a_mandarin_prompt_is_mandarin_throughout(run_overrides):
    """CH-SIMS and M3ED: the label list and the context header follow the corpus' language."""
    family, _ = make_family(run_overrides)
    info = CorpusInfo(
        "chsims", ("negative", "neutral", "positive"), ("消极", "中性", "积极"),
        language="zh", template=chsims.TEMPLATE,
    )  # fmt: skip
    mandarin = PromptLMFamily(family.config, info, family.tokenizer)
    prompt = family.tokenizer.decode(mandarin.prompt_ids("还行吧", context=["A: 你好"]))
    assert prompt.endswith("对话上文：\nA: 你好\n\n将句子的情感分类为消极、中性或积极：还行吧")


def test_unlabelled_turns_are_context_but_never_examples(run_overrides, tmp_path):
    """Corpus.context_only (e.g. Friends' non-neutral turns) reaches later turns' prompts."""
    corpus_dir = write_dialogue_corpus(tmp_path / "dialogues")
    overrides = run_overrides + [f"data.path={corpus_dir}", "prompt.context_turns=2"]
    config = load_config(overrides=overrides)
    corpus = load_corpus(config.data)
    unlabelled = corpus.splits["dev"].pop(1)  # turn 1 had no usable label: context only
    corpus.context_only["dev"] = [unlabelled]
    family = build_family(config, corpus)
    dev = corpus.split("dev")
    assert family.contexts(dev, "dev")[1] == [
        "Ross: the movie was dull.",
        "Rachel: the cast was lovely.",  # the unlabelled turn, said before turn 2
    ]
    assert family.contexts(dev, "test")[1] == [
        "Ross: the movie was dull."
    ]  # another split's: never
    loader = family.dataloader(dev, train=False, seed=0, split="dev")
    assert sum(len(batch["labels"]) for batch in loader) == 3  # scored: the labelled turns only


def test_score_mode_refuses_layers_it_cannot_share_before_loading(run_overrides, tmp_path):
    """A hybrid model (here: the tiny Llama declaring a linear-attention layer, as Qwen3-Next
    does) is refused in one line by build_family; generate mode takes it."""
    config = load_config(overrides=run_overrides)
    hybrid = tmp_path / "hybrid"
    shutil.copytree(config.model.path, hybrid)
    settings = json.loads((hybrid / "config.json").read_text())
    settings["layer_types"] = ["full_attention", "linear_attention"]
    (hybrid / "config.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError) as error:
        make_family(run_overrides, f"model.path={hybrid}")
    assert str(error.value) == (
        f"config key 'eval.mode': {hybrid} has linear_attention layers, whose state score mode "
        "cannot share across labels; use eval.mode=generate"
    )
    make_family(run_overrides, f"model.path={hybrid}", "eval.mode=generate")


@pytest.mark.parametrize("method", ["none", "lora", "ptuning_v2", "prompt_tuning"])
def test_scoring_and_training_use_the_current_cache_argument(run_overrides, caplog, method):
    """transformers 5.24 renamed `past_key_values` to `cache` and warns once per call on the old
    name (issue 14, item 7): a user's log must show emoscale's lines, not one warning per batch."""
    import warnings

    family, corpus = make_family(run_overrides, f"model.method={method}")
    items = [
        {"prompt": family.prompt_ids(e.text), "label": e.label, "index": i}
        for i, e in enumerate(corpus.split("dev")[:4])
    ]
    batch = family._collate_eval(items, left=True)
    train_batch = family._collate_train(
        [{**item, "answer": family.answers[item["label"]]} for item in items]
    )
    from transformers.utils import logging as transformers_logging

    # transformers says it once per process: forget earlier tests' warnings.
    transformers_logging.logging.Logger.warning_once.cache_clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        model = family.build_model()  # P-Tuning v2's prefix init runs the model once
        with torch.no_grad():
            for one_pass in (True, False):
                family.label_scores(model, batch["input_ids"], batch["attention_mask"], one_pass)
            family._generate(model, batch)  # generate mode
        loss = family.loss(model.train(), train_batch)  # a training step's forward/backward
        if method != "none":
            loss.backward()
    said = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert not [line for line in said if "past_key_values" in line], said


@pytest.mark.parametrize(
    "method",
    [
        ["model.method=lora"],
        ["model.method=ptuning_v2", "ptuning.num_virtual_tokens=4"],
        ["model.method=prompt_tuning", "ptuning.num_virtual_tokens=4"],
        ["model.method=full"],
    ],
    ids=lambda m: m[0].split("=")[1],
)
def test_training_loss_needs_logits_of_the_answer_columns_only(run_overrides, method):
    """The loss computes logits only where a target follows (issue 14): the same loss, to float
    rounding, as cross-entropy over every column's logits, and the same gradients."""
    import torch.nn.functional as F

    family, corpus = make_family(run_overrides, *method)
    torch.manual_seed(0)
    model = family.build_model().eval()  # no dropout: both passes see the same network
    items = [
        {
            "prompt": family.prompt_ids(e.text),
            "answer": family.answers[e.label],
            "label": e.label,
            "index": i,
        }
        for i, e in enumerate(corpus.split("train")[:6])
    ]
    batch = family._collate_train(items)
    assert len({len(item["prompt"]) for item in items}) > 1  # answers in different columns
    trainable = [p for p in model.parameters() if p.requires_grad]

    ours = family.loss(model, batch)
    ours_grads = torch.autograd.grad(ours, trainable)
    logits, _, _ = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape[1] == batch["input_ids"].shape[1]  # every column without keep_columns
    full = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), batch["targets"][:, 1:].flatten(), ignore_index=-100
    )
    full_grads = torch.autograd.grad(full, trainable)
    assert ours.item() == pytest.approx(full.item(), rel=1e-5)
    for a, b in zip(ours_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


class OwnCodeLM(torch.nn.Module):
    """A causal LM whose forward, like many a folder's own code (trust_remote_code), takes no
    `logits_to_keep`: the real Llama inside computes every column's logits."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, position_ids, use_cache, cache=None):
        return self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            cache=cache,
        )

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()


def test_models_without_logits_to_keep_get_the_same_loss_and_scores(run_overrides):
    family, corpus = make_family(run_overrides, "model.method=full")
    model = family.build_model().eval()
    own = PromptedLM(OwnCodeLM(model.lm)).eval()
    assert model.keeps_logits and not own.keeps_logits
    items = [
        {
            "prompt": family.prompt_ids(e.text),
            "answer": family.answers[e.label],
            "label": e.label,
            "index": i,
        }
        for i, e in enumerate(corpus.split("train")[:6])
    ]
    batch = family._collate_train(items)
    with torch.no_grad():
        assert family.loss(own, batch).item() == pytest.approx(family.loss(model, batch).item())
        loader = family.dataloader(corpus.split("test")[:8], train=False, seed=0)
        eval_batch = next(iter(loader))
        torch.testing.assert_close(
            family.label_scores(own, eval_batch["input_ids"], eval_batch["attention_mask"], False),
            family.label_scores(
                model, eval_batch["input_ids"], eval_batch["attention_mask"], False
            ),
        )


@pytest.mark.parametrize("method", ["ptuning_v2", "prompt_tuning"])
def test_generate_mode_answers_with_the_virtual_tokens(run_overrides, method):
    """Generate mode decodes with the trained prefix/prompt (issue 14): PEFT's generate() under
    transformers 5 dropped a P-Tuning v2 prefix and answered as the frozen model. Reference: greedy
    decoding that recomputes the whole sequence at every step, without a KV cache."""
    family, corpus = make_family(
        run_overrides,
        f"model.method={method}",
        "ptuning.num_virtual_tokens=4",
        "eval.mode=generate",
    )
    torch.manual_seed(0)
    model = family.build_model().eval()
    with torch.no_grad():  # a prefix far from its initialisation, as after training
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(3 * torch.randn_like(parameter))
    items = [
        {"prompt": family.prompt_ids(e.text), "label": e.label, "index": i}
        for i, e in enumerate(corpus.split("dev")[:3])
    ]
    batch = family._collate_eval(items, left=True)
    with torch.no_grad():
        generated = family.generated_tokens(model, batch)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        for _ in range(generated.shape[1]):
            logits, _, _ = model(ids, mask)
            token = logits[:, -1].argmax(-1, keepdim=True)
            ids, mask = torch.cat([ids, token], 1), torch.cat([mask, torch.ones_like(token)], 1)
        frozen = model.lm.get_base_model().generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False,
            max_new_tokens=generated.shape[1], pad_token_id=family.tokenizer.pad_token_id,
        )  # fmt: skip
    reference = ids[:, batch["input_ids"].shape[1] :]
    stop = torch.isin(reference, torch.tensor(family.pieces.stop_ids))
    after_stop = (stop.long().cumsum(1) - stop.long()) > 0  # padded after the first stop token
    assert torch.equal(generated[~after_stop], reference[~after_stop])
    assert not torch.equal(frozen[:, batch["input_ids"].shape[1] :], reference)  # it matters
