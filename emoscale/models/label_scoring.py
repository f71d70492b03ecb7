"""Score mode: the log-likelihood of every label's answer after each prompt (the answer is the
label's words + EOS), argmax; it can never return an invalid label.

k labels never cost k prompt passes. The k answers are appended to the prompt side by side in one
row, and a block-causal attention mask lets each answer see the prompt and its own earlier tokens
only, so one forward pass scores them all. Where a custom 4D mask would not be exact
(`supports_custom_masks`) the prompt runs once and the k answers then run together on top of its
KV cache.
"""

from __future__ import annotations

import torch
from peft import PeftModel
from torch import nn

from emoscale.errors import ConfigError


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


class LabelScorer:
    """Scores the fixed answers (token ids, one list per label) after any batch of prompts."""

    def __init__(self, answers: list[list[int]], pad_token_id: int, length_normalize: bool):
        self.answers = answers
        self.row = AnswerRow(answers)
        self.pad_token_id = pad_token_id
        self.length_normalize = length_normalize

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        width = max(len(row) for row in rows)
        return torch.tensor([row + [self.pad_token_id] * (width - len(row)) for row in rows])

    def scores(
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
            length = wrapped.num_virtual + input_ids.shape[1] + len(self.row.tokens)
            one_pass = supports_custom_masks(wrapped.lm, length)
        scores = (self._scores_in_one_pass if one_pass else self._scores_on_cache)(
            model, input_ids, attention_mask
        )
        if self.length_normalize:
            scores = scores / torch.tensor([len(a) for a in self.answers], device=scores.device)
        return scores

    def _scores_in_one_pass(self, model, input_ids, attention_mask) -> torch.Tensor:
        """Row b is [prompt b | answer 1 | ... | answer k] without each answer's last token; answer
        i's tokens see the real prompt tokens and answer i's earlier tokens, nothing else."""
        batch, width = input_ids.shape
        device = input_ids.device
        row = self.row.to(device)
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
        answers = self._pad(self.answers).to(device)  # [k, A]
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


def check_label_words(
    label_names: tuple[str, ...], words: tuple[str, ...], answer_ids: list[list[int]]
) -> None:
    """One word per class, and answers the model can tell apart (issue 12): `prompt.labels=[Good]`
    for two classes was an IndexError; two words with the same answer tokens (a tokenizer that
    maps both to <unk>) make every prediction the first of them. Before any weights load."""
    if len(words) != len(label_names):
        raise ConfigError(
            f"config key 'prompt.labels': {len(words)} label words for the {len(label_names)} "
            f"labels {list(label_names)}"
        )
    first: dict[tuple[int, ...], str] = {}
    for word, ids in zip(words, answer_ids, strict=True):
        earlier = first.setdefault(tuple(ids), word)
        if earlier != word:
            raise ConfigError(
                f"config key 'prompt.labels': {earlier!r} and {word!r} are the same answer "
                f"tokens {list(ids)} for this tokenizer; choose words it tells apart"
            )
