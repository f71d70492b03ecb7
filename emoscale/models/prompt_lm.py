"""A causal LLM as a classifier by prompting (the LLM paper's method).

The prompt lists the label words and the text; the answer is one label word followed by EOS.
Training: cross-entropy on the answer tokens only. Prediction:
- `score`: log-likelihood of every label's answer (its words + EOS), argmax; it can never return
  an invalid label. k labels never cost k prompt passes: the k answers are appended to the prompt
  side by side in one row, and a block-causal attention mask lets each answer see the prompt and
  its own earlier tokens only, so one forward pass scores them all. Where a custom 4D mask is not
  supported (flash-attention kernels, models with their own code) the prompt runs once and the k
  answers then run together on top of its KV cache.
- `generate`: greedy decoding, parsed to a label; answers that match no label count as invalid.

Positions are always derived from the attention mask (virtual tokens included), so left- and
right-padded batches give the same scores, in training and in prediction alike.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn
from torch.utils.data import DataLoader

from emoscale import rules
from emoscale.config import RunConfig
from emoscale.data.batching import LengthGroupedBatches, sorted_batches
from emoscale.data.context import format_context, split_contexts
from emoscale.data.examples import CorpusInfo, Example
from emoscale.errors import ConfigError
from emoscale.models import adapters

# How a prompt lists the labels ("A, B or C" / "A、B或C") and introduces the dialogue context,
# in the corpus' language (CorpusInfo.language): a Mandarin prompt stays Mandarin throughout.
LIST_SEPARATORS = {"en": (", ", " or "), "zh": ("、", "或")}
CONTEXT_HEADERS = {"en": "Dialogue so far:\n", "zh": "对话上文：\n"}


def label_list_text(words: tuple[str, ...], language: str = "en") -> str:
    """'A, B or C', as the paper's prompt lists the labels."""
    comma, last = LIST_SEPARATORS.get(language, LIST_SEPARATORS["en"])
    return words[0] if len(words) == 1 else f"{comma.join(words[:-1])}{last}{words[-1]}"


def prompt_end_logits(logits, attention_mask, column: int | None) -> torch.Tensor:
    """Each row's logits at its last real prompt token: `column` of `logits` when the batch is
    left-padded (every prompt ends in the same column), else found from the attention mask."""
    if column is not None:
        return logits[:, column]
    last = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


class AnswerRow:
    """The k answers laid side by side after the prompt for one-pass scoring, each without its
    last token (that one is only predicted): the same for every batch, so built once."""

    def __init__(self, answers: list[list[int]]):
        inputs = [answer[:-1] for answer in answers]
        self.tokens = torch.tensor([t for ids in inputs for t in ids])
        self.block = torch.tensor([i for i, ids in enumerate(inputs) for _ in ids])  # which answer
        self.offset = torch.tensor([j for ids in inputs for j in range(len(ids))])  # where in it
        self.targets = torch.tensor([t for answer in answers for t in answer[1:]])
        self.first = torch.tensor([answer[0] for answer in answers])

    def to(self, device) -> AnswerRow:
        if self.tokens.device != torch.device(device):
            for name, value in vars(self).items():
                setattr(self, name, value.to(device))
        return self


class PromptedLM(nn.Module):
    """Wraps a causal LM (maybe a PEFT model) with one forward used by training and scoring alike.

    Keeping virtual-token handling inside one nn.Module lets DDP and DeepSpeed wrap it as a whole.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        peft_config = lm.active_peft_config if isinstance(lm, PeftModel) else None
        self.prompt_learning = (
            peft_config.peft_type.value if peft_config and peft_config.is_prompt_learning else None
        )
        self.num_virtual = peft_config.num_virtual_tokens if self.prompt_learning else 0

    def forward(
        self,
        input_ids,
        attention_mask,
        cache=None,
        cache_mask=None,
        use_cache=False,
        last_only=False,
        visible=None,
        positions=None,
        keep_last=0,
    ):
        """Logits for `input_ids` [B, L] (or only the last column: `last_only`); `cache`/`cache_mask`
        continue an earlier call. Returns (logits [B, L or 1, V], cache, mask over cache + input).

        With `visible` [B, L, L] (token q sees token k) and `positions` [B, L] instead of causal
        masking: one pass under that mask, logits of the last `keep_last` columns (0: all)."""
        if visible is not None:  # one-pass label scoring; through forward() so DDP/DeepSpeed see it
            return self._forward_visible(input_ids, visible, positions, keep_last), None, None
        batch = input_ids.shape[0]
        model, inputs, virtual = self.lm, {"input_ids": input_ids}, 0
        if cache is None and self.prompt_learning:
            model = self.lm.get_base_model()
            ones = attention_mask.new_ones(batch, self.num_virtual)
            cache_mask = ones
            if (
                self.prompt_learning == "PREFIX_TUNING"
            ):  # P-Tuning v2: learned keys/values in every layer
                cache = self.lm.get_prompt(
                    batch, max_cache_len=self.num_virtual + input_ids.shape[1]
                )
            else:  # prompt tuning / P-tuning: learned input embeddings before the text
                prompts = self.lm.get_prompt(batch_size=batch)
                embeds = self.lm.word_embeddings(input_ids)
                inputs = {"inputs_embeds": torch.cat([prompts.to(embeds.dtype), embeds], dim=1)}
                attention_mask, cache_mask, virtual = (
                    torch.cat([ones, attention_mask], 1),
                    None,
                    self.num_virtual,
                )
        elif cache is not None and self.prompt_learning:
            model = self.lm.get_base_model()
        full_mask = (
            attention_mask if cache_mask is None else torch.cat([cache_mask, attention_mask], dim=1)
        )
        positions = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -attention_mask.shape[1] :]
        output = model(
            **inputs,
            attention_mask=full_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=use_cache,
            logits_to_keep=1 if last_only else 0,  # 0: all positions
        )
        logits = output.logits if last_only else output.logits[:, virtual:]
        return logits, output.past_key_values, full_mask

    def _forward_visible(self, input_ids, visible, positions, keep_last):
        batch, length, virtual = *input_ids.shape, self.num_virtual
        model, inputs, cache = self.lm, {"input_ids": input_ids}, None
        if self.prompt_learning:
            model = self.lm.get_base_model()
            positions = positions + virtual  # text positions start after the virtual tokens
            sees_virtual = visible.new_ones(batch, length, virtual)
            if self.prompt_learning == "PREFIX_TUNING":
                cache = self.lm.get_prompt(batch, max_cache_len=virtual + length)
                visible = torch.cat([sees_virtual, visible], -1)
            else:  # virtual input embeddings first: causal among themselves, seen by all text
                prompts = self.lm.get_prompt(batch_size=batch)
                embeds = self.lm.word_embeddings(input_ids)
                inputs = {"inputs_embeds": torch.cat([prompts.to(embeds.dtype), embeds], dim=1)}
                causal = torch.ones(virtual, virtual, dtype=torch.bool, device=visible.device)
                virtual_rows = torch.cat(
                    [
                        causal.tril().expand(batch, -1, -1),
                        visible.new_zeros(batch, virtual, length),
                    ],
                    -1,
                )
                visible = torch.cat([virtual_rows, torch.cat([sees_virtual, visible], -1)], 1)
                first = torch.arange(virtual, device=positions.device).expand(batch, -1)
                positions = torch.cat([first, positions], 1)
        # Additive, not boolean: eager attention adds the mask to the scores.
        dtype = self.lm.get_input_embeddings().weight.dtype
        mask = torch.where(visible, 0.0, torch.finfo(dtype).min).to(dtype)[:, None]
        output = model(
            **inputs,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=False,
            logits_to_keep=keep_last,
        )
        is_embeds = "inputs_embeds" in inputs
        return output.logits[:, virtual:] if keep_last == 0 and is_embeds else output.logits


ATTENTION_LAYERS = ("full_attention", "sliding_attention", "chunked_attention")


def check_label_scoring(folder: str, trust_remote_code: bool) -> None:
    """Score mode shares one prompt among k answers through attention: a KV cache copied per
    label, or a mask. Layers of other kinds (convolutions, linear attention, state-space layers
    in hybrid models) carry a state that neither can share, so they are refused before any
    weights load, rather than at the first evaluation."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    others = sorted(set(getattr(config.get_text_config(), "layer_types", None) or ()))
    others = [kind for kind in others if kind not in ATTENTION_LAYERS]
    if others:
        raise ConfigError(
            f"config key 'eval.mode': {folder} has {', '.join(others)} layers, whose state score "
            "mode cannot share across labels; use eval.mode=generate"
        )


def supports_custom_masks(lm: nn.Module, length: int) -> bool:
    """Whether a block-causal 4D mask over `length` keys scores exactly what `lm` would score one
    answer at a time. transformers passes a 4D mask to every attention layer as given, so not for:
    - flash-attention kernels (no custom masks) and a folder's own model code (unknown);
    - ALiBi models (Bloom, MPT, Falcon with alibi): their bias follows columns, not positions;
    - layers other than attention (convolutions, linear attention, state-space layers in hybrid
      models): they run straight along the row, so one answer would see the answers before it;
    - sliding-window or chunked attention longer than the window: the mask would widen it."""
    base = lm.get_base_model() if isinstance(lm, PeftModel) else lm
    config = base.config.get_text_config()
    if base.config._attn_implementation not in ("eager", "sdpa"):
        return False
    if not type(base).__module__.startswith("transformers."):
        return False
    if getattr(config, "alibi", False) or config.model_type in ("bloom", "mpt"):
        return False
    window = getattr(config, "sliding_window", None)
    window = window if getattr(config, "use_sliding_window", True) else None
    chunk = getattr(config, "attention_chunk_size", None)
    reach = dict(zip(ATTENTION_LAYERS, (None, window, chunk), strict=True))
    default = "sliding_attention" if window else "chunked_attention" if chunk else "full_attention"
    for kind in set(getattr(config, "layer_types", None) or [default]):
        if kind not in reach:
            return False
        if reach[kind] is not None and length > reach[kind]:
            return False
    return True


class PromptLMFamily:
    """The prompt classifier as a model family for the trainer (see models/family.py)."""

    def __init__(
        self,
        config: RunConfig,
        info: CorpusInfo,
        tokenizer,
        context_only: dict[str, list[Example]] | None = None,
    ):
        self.config = config
        self.context_only = context_only or {}  # split -> unlabelled turns (Corpus.context_only)
        self.tokenizer = tokenizer
        self.label_names = info.label_names
        self.label_words = tuple(config.prompt.labels or info.label_words)
        template = config.prompt.template or info.template
        before, _, after = template.format(
            labels=label_list_text(self.label_words, info.language), text="\0"
        ).partition("\0")
        self.prompt_before = tokenizer(before)["input_ids"]  # special tokens (BOS) included once
        self.prompt_after = tokenizer(after, add_special_tokens=False)["input_ids"]
        self.answers = [self._answer_ids(word) for word in self.label_words]
        self.answer_row = AnswerRow(self.answers)
        self.truncated = Counter()  # split -> texts cut to data.max_length
        self.context_header = CONTEXT_HEADERS.get(info.language, CONTEXT_HEADERS["en"])

    def _answer_ids(self, word: str) -> list[int]:
        return self.tokenizer(" " + word, add_special_tokens=False)["input_ids"] + [
            self.tokenizer.eos_token_id
        ]

    # --- data ---------------------------------------------------------------------------------

    def prompt_ids(self, text: str, split: str = "", context: list[str] = ()) -> list[int]:
        """[dialogue context] + template before {text} + text (truncated, counted) + template after."""
        context_ids = []
        if context:
            block = self.context_header + "\n".join(context) + "\n\n"
            context_ids = self.tokenizer(block, add_special_tokens=False)["input_ids"]
        budget = self.config.data.max_length - len(self.prompt_before) - len(self.prompt_after)
        text_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(text_ids) > budget:
            self.truncated[split] += 1
            text_ids = text_ids[: max(budget, 1)]
        # Context goes after BOS (kept at the start of prompt_before) and before the instruction.
        bos = (
            self.prompt_before[:1]
            if self.prompt_before[:1] == [self.tokenizer.bos_token_id]
            else []
        )
        return bos + context_ids + self.prompt_before[len(bos) :] + text_ids + self.prompt_after

    def contexts(self, examples: list[Example], split: str = "") -> list[list[str]]:
        """Earlier turns of each example's dialogue (same split only), oldest dropped to fit the budget."""
        k = self.config.prompt.context_turns
        budget = self.config.prompt.context_max_tokens
        count = lambda text: len(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        turns = split_contexts(examples, k, self.context_only.get(split, []))
        return [format_context(earlier, count, budget) for earlier in turns]

    def dataloader(
        self, examples: list[Example], train: bool, seed: int, split: str = ""
    ) -> DataLoader:
        # Tokenised once here, not per step.
        prompts = [
            self.prompt_ids(example.text, split, context)
            for example, context in zip(examples, self.contexts(examples, split), strict=True)
        ]
        if train:
            items = [
                {"prompt": prompt, "answer": self.answers[example.label], "index": index}
                for index, (prompt, example) in enumerate(zip(prompts, examples, strict=True))
            ]
            lengths = [len(item["prompt"]) + len(item["answer"]) for item in items]
            sampler = LengthGroupedBatches(
                lengths, self.config.train.batch_size, seed, self.config.data.group_by_length
            )
            collate = self._collate_train
        else:
            items = [
                {"prompt": prompt, "label": example.label, "index": index}
                for index, (prompt, example) in enumerate(zip(prompts, examples, strict=True))
            ]
            sampler = sorted_batches([len(p) for p in prompts], self.config.eval.batch_size)
            collate = self._collate_eval
        return DataLoader(
            items,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.config.train.num_workers,
        )

    def _pad(self, rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
        width = max(len(row) for row in rows)
        padded = [
            ([value] * (width - len(row)) + row) if left else (row + [value] * (width - len(row)))
            for row in rows
        ]
        return torch.tensor(padded, dtype=torch.long)

    def _collate_train(self, items: list[dict]) -> dict:
        sequences = [item["prompt"] + item["answer"] for item in items]
        targets = [[-100] * len(item["prompt"]) + item["answer"] for item in items]
        return {
            "input_ids": self._pad(sequences, self.tokenizer.pad_token_id, left=False),
            "attention_mask": self._pad([[1] * len(s) for s in sequences], 0, left=False),
            "targets": self._pad(targets, -100, left=False),
            "example_index": torch.tensor([item["index"] for item in items]),
        }

    def _collate_eval(self, items: list[dict], left: bool = True) -> dict:
        # Left padding puts every prompt's last token in the last column: generate() needs that.
        prompts = [item["prompt"] for item in items]
        return {
            "input_ids": self._pad(prompts, self.tokenizer.pad_token_id, left=left),
            "attention_mask": self._pad([[1] * len(p) for p in prompts], 0, left=left),
            "labels": torch.tensor([item["label"] for item in items]),
            "example_index": torch.tensor([item["index"] for item in items]),
        }

    # --- model --------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return PromptedLM(adapters.load_model(self.config))

    def loss(self, model: nn.Module, batch: dict, terms: dict | None = None) -> torch.Tensor:
        logits, _, _ = model(batch["input_ids"], batch["attention_mask"])
        # Token t predicts token t+1; only answer tokens have targets (the rest are -100).
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            batch["targets"][:, 1:].flatten(),
            ignore_index=-100,
        )

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.eval.mode == "generate":
            return self._generate(model, batch)
        scores = self.label_scores(model, batch["input_ids"], batch["attention_mask"])
        return scores.argmax(-1), scores

    def label_scores(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        one_pass: bool | None = None,
    ) -> torch.Tensor:
        """Log-likelihood of each label's answer after each prompt: [B, k]. `one_pass`: score with
        the block-causal mask (True) or on the prompt's KV cache (False); None picks what the
        model supports."""
        if one_pass is None:
            wrapped = getattr(model, "module", model)  # DDP/DeepSpeed keep the module in .module
            length = wrapped.num_virtual + input_ids.shape[1] + len(self.answer_row.tokens)
            one_pass = supports_custom_masks(wrapped.lm, length)
        scores = (self._scores_in_one_pass if one_pass else self._scores_on_cache)(
            model, input_ids, attention_mask
        )
        if self.config.prompt.length_normalize:
            scores = scores / torch.tensor([len(a) for a in self.answers], device=scores.device)
        return scores

    def _scores_in_one_pass(self, model, input_ids, attention_mask) -> torch.Tensor:
        """Row b is [prompt b | answer 1 | ... | answer k] without each answer's last token; answer
        i's tokens see the real prompt tokens and answer i's earlier tokens, nothing else."""
        batch, width = input_ids.shape
        device = input_ids.device
        row = self.answer_row.to(device)
        tokens, block, offset, tail = row.tokens, row.block, row.offset, len(row.tokens)

        real = attention_mask.bool()
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        answer_sees_answer = (block[:, None] == block[None]) & (offset[None] <= offset[:, None])
        # A padding query sees itself (the diagonal): no row is ever fully masked, which some
        # attention kernels would turn into NaN, whatever the dtype or autocast.
        diagonal = torch.eye(width, dtype=torch.bool, device=device)
        prompt_rows = torch.cat(
            [(causal & real[:, None]) | diagonal, real.new_zeros(batch, width, tail)], -1
        )
        answer_rows = torch.cat(
            [real[:, None].expand(-1, tail, -1), answer_sees_answer.expand(batch, -1, -1)], -1
        )
        visible = torch.cat([prompt_rows, answer_rows], 1)
        prompt_positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        answer_positions = attention_mask.sum(-1, keepdim=True) + offset
        positions = torch.cat([prompt_positions, answer_positions], 1)

        # Left-padded batches (all of evaluation's) end every prompt in the last prompt column:
        # only the answer columns and that one need the LM head.
        left_padded = bool(attention_mask[:, -1].all())
        logits = model(
            torch.cat([input_ids, tokens.expand(batch, -1)], 1),
            None,
            visible=visible,
            positions=positions,
            keep_last=tail + 1 if left_padded else 0,
        )[0].float()
        prompt_end = prompt_end_logits(logits, attention_mask, 0 if left_padded else None)
        scores = prompt_end.log_softmax(-1)[:, row.first]  # [B, k]: each answer's first token
        answer_logits = logits[:, -tail:].log_softmax(-1)
        targets = row.targets.expand(batch, -1)[..., None]
        token_scores = answer_logits.gather(-1, targets).squeeze(-1)
        return scores.index_add(1, block, token_scores)

    def _scores_on_cache(self, model, input_ids, attention_mask) -> torch.Tensor:
        batch, k = input_ids.shape[0], len(self.answers)
        device = input_ids.device
        answers = self._pad(self.answers, self.tokenizer.pad_token_id, left=False).to(
            device
        )  # [k, A]
        lengths = torch.tensor([len(a) for a in self.answers], device=device)
        answer_mask = (
            torch.arange(answers.shape[1], device=device)[None] < lengths[:, None]
        )  # [k, A]

        # The last real prompt token predicts the first answer token. Left-padded batches (all of
        # evaluation's) have it in the last column: only that column's logits are computed.
        left_padded = bool(attention_mask[:, -1].all())
        logits, cache, full_mask = model(
            input_ids, attention_mask, use_cache=True, last_only=left_padded
        )
        first = prompt_end_logits(logits, attention_mask, -1 if left_padded else None)
        first = first.float().log_softmax(-1)  # [B, V]
        scores = first[:, answers[:, 0]]  # [B, k]
        if answers.shape[1] > 1:
            # All k continuations at once on the shared prompt cache: rows are (example, label) pairs.
            cache.batch_repeat_interleave(k)
            continuation = answers[:, :-1].repeat(batch, 1)  # [B*k, A-1]
            targets = answers[:, 1:].repeat(batch, 1)
            target_mask = answer_mask[:, 1:].repeat(batch, 1)
            logits, _, _ = model(
                continuation,
                answer_mask[:, :-1].repeat(batch, 1).long(),
                cache=cache,
                cache_mask=full_mask.repeat_interleave(k, dim=0),
            )
            token_scores = logits.float().log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
            scores = scores + (token_scores * target_mask).sum(-1).view(batch, k)
        return scores

    def _generate(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        lm = getattr(model, "module", model).lm  # DDP/DeepSpeed keep the module in .module
        output = lm.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=self.config.eval.max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            # Under ZeRO-3 each rank holds a shard of every layer: all must join every step.
            synced_gpus=self.config.eval.synced_gpus
            if self.config.eval.synced_gpus is not None
            else rules.deepspeed_zero_stage() == 3,
        )
        texts = self.tokenizer.batch_decode(
            output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
        )
        predictions = torch.tensor(
            [self.parse_answer(text) for text in texts], device=batch["input_ids"].device
        )
        scores = (
            F.one_hot(predictions.clamp(min=0), len(self.answers)).float()
            * (predictions >= 0)[:, None]
        )
        return predictions, scores

    def parse_answer(self, text: str) -> int:
        """The label a generated answer names, or -1. Exact word first, then a label the answer starts with."""
        answer = text.strip().strip(string.punctuation + " ").lower()
        words = [word.lower() for word in self.label_words]
        if answer in words:
            return words.index(answer)
        for index in sorted(range(len(words)), key=lambda i: -len(words[i])):
            if answer.startswith(words[index]):
                return index
        return -1

    def save_model(self, model: nn.Module, folder: Path, state_dict: dict | None = None) -> None:
        """An adapter in PEFT's format (PeftModel.from_pretrained loads it), or the full model."""
        lm = model.lm
        if state_dict is not None:
            state_dict = {key.removeprefix("lm."): value for key, value in state_dict.items()}
        lm.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
        if not isinstance(lm, PeftModel):
            self.tokenizer.save_pretrained(folder)
