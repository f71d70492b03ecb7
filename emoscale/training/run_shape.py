"""The shape `emoscale estimate` sizes for a run config: batch, sequence length and the columns
that get logits, with the answer length read from the run's own tokenizer and prompt formatting.

emoscale's loss (models/prompt_lm.answer_loss) asks for logits only at the columns that predict
an answer token: per example, the label answer's tokens (its words + EOS or a chat template's
end of turn). The longest label's answer is counted with the family's own `build_pieces`, so a
chat template's end-of-turn tokens and a byte-level tokenizer's Mandarin labels count as they
will in training. A model folder without a tokenizer (a config-only shape, as the ChatGLM2-6B
figures in the README) falls back to FALLBACK_ANSWER_TOKENS, and the command says so.
"""

from __future__ import annotations

from pathlib import Path

from emoscale.config import RunConfig
from emoscale.errors import DataError
from emoscale.training.estimate import RunShape

# Label words + end of answer for most English labels on a BPE/SentencePiece vocabulary.
FALLBACK_ANSWER_TOKENS = 4
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def answer_tokens(config: RunConfig) -> tuple[int, str]:
    """(tokens of the longest label answer, a line saying where the number comes from)."""
    folder = Path(config.model.path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return FALLBACK_ANSWER_TOKENS, (
            f"answer: {FALLBACK_ANSWER_TOKENS} tokens assumed ({folder} holds no tokenizer)"
        )
    from emoscale.data import registry
    from emoscale.models import adapters
    from emoscale.models.prompt_lm import PromptLMFamily

    info = registry.declared_info(config.data)
    if info is None and config.data.path is None:
        return FALLBACK_ANSWER_TOKENS, (
            f"answer: {FALLBACK_ANSWER_TOKENS} tokens assumed (the labels of data.dataset="
            f"{config.data.dataset} come from its train split: give data.labels or data.path)"
        )
    if info is None:  # a generic corpus: its labels are its train split's
        try:
            info = registry.load_corpus(config.data).info
        except DataError as error:  # estimate needs no data: say why the count is assumed
            return FALLBACK_ANSWER_TOKENS, (
                f"answer: {FALLBACK_ANSWER_TOKENS} tokens assumed (the labels could not be read:"
                f" {error})"
            )
    family = PromptLMFamily(config, info, adapters.load_tokenizer(config))
    longest = max(range(len(family.answers)), key=lambda index: len(family.answers[index]))
    count = len(family.answers[longest])
    return count, (
        f"answer: {count} tokens, the longest label answer ({family.label_words[longest]!r} "
        "+ end of answer, as the run formats it)"
    )


def shape_from_run_config(config: RunConfig, answer_tokens: int) -> RunShape:
    """The RunShape of an emoscale RunConfig: the longest batch is data.max_length prompt tokens
    plus the answer (label words + EOS). Logits: at most `answer_tokens` columns per example (the
    union over a batch whose prompts end at different columns)."""
    model, lora = config.model, config.lora
    return RunShape(
        batch_size=config.train.batch_size,
        seq_len=config.data.max_length + answer_tokens,
        method=model.method,
        lora_r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        lora_target_modules=lora.target_modules,
        num_virtual_tokens=config.ptuning.num_virtual_tokens,
        prefix_projection=config.ptuning.prefix_projection,
        encoder_hidden_size=config.ptuning.encoder_hidden_size,
        dtype=model.dtype,
        quantization="8bit" if model.load_in_8bit else "4bit" if model.load_in_4bit else None,
        double_quant=model.bnb_4bit_use_double_quant,
        gradient_checkpointing=config.train.gradient_checkpointing,
        logit_columns=config.train.batch_size * answer_tokens,
    )
