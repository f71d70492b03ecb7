"""Tiny random-weight causal LMs with a tokenizer trained on your own text: demos and tests, offline.

    emoscale make-tiny --arch llama --text corpus.txt --out runs/tiny-llama

The folder is a normal Hugging Face model folder (config.json, model.safetensors, tokenizer.json):
AutoModelForCausalLM and AutoTokenizer load it like any downloaded model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from emoscale.output_folder import new_folder, refuse_existing

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
ARCHITECTURES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


def byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE (as Llama-3, Qwen and RoBERTa use) trained on `texts`."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A causal LM's tokenizer trained on `texts`; pads on the left."""
    tokenizer = byte_level_bpe(texts, vocab_size, SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )


def make_tiny(
    out: str | Path,
    texts: Iterable[str],
    arch: str = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 1000,
    seed: int = 0,
    initializer_range: float = 0.02,
) -> Path:
    """Save a small random causal LM plus a tokenizer trained on `texts` to `out`, which must not
    hold files (an empty folder is fine).

    `initializer_range` 0.02 (transformers' default) gives a model that learns when fully
    fine-tuned; 0.2 made the 256x4 model stay near chance for two epochs (issue 14). Adapters
    (LoRA, prefixes) on a frozen random model need wider weights, so that the frozen lm_head can
    still separate tokens (0.02 caps logits near zero): the demo and the test fixture use 0.2."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    out = Path(out)
    refuse_existing(out, "make-tiny: --out")  # before the tokenizer trains
    tokenizer = train_tokenizer(texts, vocab_size)
    config_class, model_class = ARCHITECTURES[arch]
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = model_class(config)
    with new_folder(out, "make-tiny: --out") as work:  # never over another model's files
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
    return out
