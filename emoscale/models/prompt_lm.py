"""A causal LLM as a classifier by prompting (the LLM paper's method): the model family.

The prompt lists the label words and the text; the answer is one label word followed by EOS.
Training: cross-entropy on the answer tokens only (the LM wrapper is `prompted_lm.py`).
Prediction:
- `score`: every label's answer log-likelihood, argmax (`label_scoring.py`);
- `generate`: greedy decoding, parsed to a label; answers that match no label count as invalid.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn
from torch.utils.data import DataLoader

from emoscale.config import RunConfig, rules
from emoscale.data.batching import LengthGroupedBatches, sorted_batches
from emoscale.data.context import format_context, split_contexts
from emoscale.data.examples import CorpusInfo, Example
from emoscale.errors import ConfigError, reason
from emoscale.models import adapters
from emoscale.models.answer_parsing import AnswerParser
from emoscale.models.class_weights import weighted_loss
from emoscale.models.label_scoring import LabelScorer
from emoscale.models.prefix_init import init_prefix_from_tokens
from emoscale.models.prompt_tokens import SENTINEL, build_pieces, resolve_chat_template
from emoscale.models.prompted_lm import PromptedLM

# How a prompt lists the labels ("A, B or C" / "A、B或C") and introduces the dialogue context,
# in the corpus' language (CorpusInfo.language): a Mandarin prompt stays Mandarin throughout.
LIST_SEPARATORS = {"en": (", ", " or "), "zh": ("、", "或")}
CONTEXT_HEADERS = {"en": "Dialogue so far:\n", "zh": "对话上文：\n"}


def label_list_text(words: tuple[str, ...], language: str = "en") -> str:
    """'A, B or C', as the paper's prompt lists the labels."""
    comma, last = LIST_SEPARATORS.get(language, LIST_SEPARATORS["en"])
    return words[0] if len(words) == 1 else f"{comma.join(words[:-1])}{last}{words[-1]}"


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
        # [k] per answer token of each label, or None; training sets it (train.prepare_inputs)
        self.class_weights: torch.Tensor | None = None
        self.context_only = context_only or {}  # split -> unlabelled turns (Corpus.context_only)
        self.tokenizer = tokenizer
        self.label_names = info.label_names
        self.label_words = tuple(config.prompt.labels or info.label_words)
        template = config.prompt.template or info.template
        instruction = template.format(
            labels=label_list_text(self.label_words, info.language), text=SENTINEL
        )
        chat_template = resolve_chat_template(tokenizer, config.prompt.chat_template)
        self.pieces = build_pieces(tokenizer, instruction, self.label_words, chat_template)
        fixed = len(self.pieces.head) + len(self.pieces.before_first) + len(self.pieces.after)
        if fixed >= config.data.max_length:  # every text was cut to one token (or a 200,000-
            # character template made every sequence that long: the run seemed to hang)
            raise ConfigError(
                f"config key 'data.max_length': {config.data.max_length} tokens leave no room for "
                f"the text: the prompt around it (prompt.template, the label words, the chat "
                f"template) takes {fixed} tokens with this tokenizer"
            )
        self.answers = self.pieces.answers
        self.answer_parser = AnswerParser(self.label_words)
        self.scorer = LabelScorer(
            self.answers, tokenizer.pad_token_id, config.prompt.length_normalize
        )
        self.truncated = Counter()  # split -> texts cut to data.max_length
        self.context_header = CONTEXT_HEADERS.get(info.language, CONTEXT_HEADERS["en"])

    # --- data ---------------------------------------------------------------------------------

    def prompt_ids(self, text: str, split: str = "", context: list[str] = ()) -> list[int]:
        """BOS [+ chat template head] [+ dialogue context] + instruction + text (truncated,
        counted) + the rest of the instruction [+ end of user turn, assistant header]."""
        pieces, tokenizer = self.pieces, self.tokenizer
        before, context_ids = pieces.before_first, []
        if context:
            block = self.context_header + "\n".join(context) + "\n\n"
            context_ids = pieces.context_ids(tokenizer, block)
            before = pieces.before_later
        fixed = len(pieces.head) + len(before) + len(pieces.after)
        budget = self.config.data.max_length - fixed
        text_ids = pieces.text_ids(tokenizer, text)
        if len(text_ids) > budget:
            self.truncated[split] += 1
            text_ids = text_ids[: max(budget, 1)]
        # BOS and the template's head come first, the context then the instruction (issue 14).
        return pieces.head + context_ids + before + text_ids + pieces.after

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
                {
                    "prompt": prompt,
                    "answer": self.answers[example.label],
                    "label": example.label,
                    "index": index,
                }
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
            "labels": torch.tensor([item["label"] for item in items]),
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
        lm = adapters.load_model(self.config)
        if self.config.model.method == "ptuning_v2" and self.config.ptuning.init == "tokens":
            try:
                init_prefix_from_tokens(lm, self.prefix_init_ids())
            except ValueError as error:  # no tokens; layers of unequal key/value shapes (PEFT)
                raise ConfigError(
                    "config key 'ptuning.init': cannot start the prefix from the model's own "
                    f"keys/values ({reason(error)}); set ptuning.init=random"
                ) from None
        return PromptedLM(lm)

    def prefix_init_ids(self) -> list[int]:
        """What `ptuning.init=tokens` reads: BOS [+ chat head] + `ptuning.init_text`, or else the
        run's own prompt with an empty text slot (its instruction and label list)."""
        pieces, text = self.pieces, self.config.ptuning.init_text
        if text is not None:
            return pieces.head + pieces.context_ids(self.tokenizer, text)
        return pieces.head + pieces.before_first + pieces.after

    def loss(self, model: nn.Module, batch: dict, terms: dict | None = None) -> torch.Tensor:
        return answer_loss(model, batch, self.class_weights)

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        predicted, scores, _ = self.predict_answers(model, batch)
        return predicted, scores

    @torch.no_grad()
    def predict_answers(
        self, model: nn.Module, batch: dict
    ) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
        """predict(), and in generate mode each generated answer's text (else None): the run's
        predictions keep it, so an invalid answer can be read back (models/family.py)."""
        if self.config.eval.mode == "generate":
            return self._generate(model, batch)
        scores = self.label_scores(model, batch["input_ids"], batch["attention_mask"])
        return scores.argmax(-1), scores, None

    def label_scores(self, model, input_ids, attention_mask, one_pass=None) -> torch.Tensor:
        """Log-likelihood of each label's answer after each prompt: [B, k] (label_scoring.py)."""
        return self.scorer.scores(model, input_ids, attention_mask, one_pass)

    def generated_tokens(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Greedy answers to a left-padded batch: [B, new tokens], padded after a stop token."""
        wrapped = getattr(model, "module", model)  # DDP/DeepSpeed keep the module in .module
        # Under ZeRO-3 each rank holds a shard of every layer: all must join every step.
        synced = (
            self.config.eval.synced_gpus
            if self.config.eval.synced_gpus is not None
            else rules.deepspeed_zero_stage() == 3
        )
        if wrapped.prompt_learning:
            return self._greedy(model, batch, synced)
        output = wrapped.lm.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=self.config.eval.max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.pieces.stop_ids,  # EOS, and a chat template's end-of-turn
            synced_gpus=synced,
        )
        return output[:, batch["input_ids"].shape[1] :]

    def _greedy(self, model: nn.Module, batch: dict, synced: bool) -> torch.Tensor:
        """Greedy decoding on PromptedLM's own forward and KV cache, which carry the virtual
        tokens. PEFT's generate() lost a P-Tuning v2 prefix under transformers 5: the prefix
        cache it passes as `past_key_values` gives way to generate()'s own empty `cache`, so
        the answers were the frozen model's (issue 14)."""
        input_ids, pad = batch["input_ids"], self.tokenizer.pad_token_id
        stop = torch.tensor(self.pieces.stop_ids, device=input_ids.device)
        logits, cache, mask = model(
            input_ids, batch["attention_mask"], use_cache=True, last_only=True
        )
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        tokens = []
        steps = self.config.eval.max_new_tokens
        for step in range(steps):
            token = logits[:, -1].argmax(-1).masked_fill(finished, pad)
            tokens.append(token)
            finished |= torch.isin(token, stop)
            if step == steps - 1 or (finished.all() and not synced):
                break  # the last token needs no forward pass after it
            column = token[:, None]
            logits, cache, mask = model(
                column, torch.ones_like(column), cache=cache, cache_mask=mask, use_cache=True
            )
        return torch.stack(tokens, 1)

    def _generate(
        self, model: nn.Module, batch: dict
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        texts = self.tokenizer.batch_decode(
            self.generated_tokens(model, batch), skip_special_tokens=True
        )
        predictions = torch.tensor(
            [self.parse_answer(text) for text in texts], device=batch["input_ids"].device
        )
        scores = (
            F.one_hot(predictions.clamp(min=0), len(self.answers)).float()
            * (predictions >= 0)[:, None]
        )
        return predictions, scores, texts

    def parse_answer(self, text: str) -> int:
        """The one label a generated answer names, or -1 (answer_parsing.py)."""
        return self.answer_parser(text)

    def save_model(self, model: nn.Module, folder: Path, state_dict: dict | None = None) -> None:
        """An adapter in PEFT's format (PeftModel.from_pretrained loads it), or the full model."""
        lm = model.lm
        if state_dict is not None:
            state_dict = {key.removeprefix("lm."): value for key, value in state_dict.items()}
        lm.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
        if not isinstance(lm, PeftModel):
            self.tokenizer.save_pretrained(folder)


def answer_loss(
    model: nn.Module, batch: dict, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of the answer tokens: token t predicts token t+1, and only answer tokens have
    targets (the rest are -100). Only the columns that predict one get logits: the LM head over a
    49k vocabulary at every prompt position was a fifth of a SmolLM2 LoRA step's work, and the
    largest transient in memory (issue 14; training/estimate.py counts these columns). With
    `class_weights`, each answer token weighs its example's class weight (train.class_weights)."""
    targets = batch["targets"][:, 1:]
    columns = (targets != -100).any(0).nonzero().squeeze(-1)
    logits, _, _ = model(batch["input_ids"], batch["attention_mask"], keep_columns=columns)
    kept = targets[:, columns]
    if class_weights is None:
        return F.cross_entropy(logits.flatten(0, 1).float(), kept.flatten(), ignore_index=-100)
    per_token = F.cross_entropy(
        logits.flatten(0, 1).float(), kept.flatten(), ignore_index=-100, reduction="none"
    ).view_as(kept)
    answer = kept != -100
    weights = class_weights.to(per_token.device)[batch["labels"]][:, None] * answer
    return weighted_loss(per_token, weights, answer.sum())
