"""The causal LM wrapped with one forward for training and label scoring alike.

Positions are always derived from the attention mask (virtual tokens included), so left- and
right-padded batches give the same logits. Virtual tokens of P-Tuning v2 (a per-layer prefix
cache), prompt tuning and P-tuning (input embeddings) are handled here, inside one nn.Module, so
that DDP and DeepSpeed wrap it as a whole.
"""

from __future__ import annotations

import inspect

import torch
from peft import PeftModel
from torch import nn


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
        # transformers 5.24 renamed the KV-cache argument `past_key_values` to `cache` (the old name
        # warns on every call until 5.40); earlier releases and a folder's own code take the old one.
        base = lm.get_base_model() if isinstance(lm, PeftModel) else lm
        parameters = inspect.signature(base.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"

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
        keep_columns=None,
    ):
        """Logits for `input_ids` [B, L] (or only the last column: `last_only`); `cache`/`cache_mask`
        continue an earlier call. Returns (logits [B, L or 1, V], cache, mask over cache + input).

        With `visible` [B, L, L] (token q sees token k) and `positions` [B, L] instead of causal
        masking: one pass under that mask, logits of the last `keep_last` columns (0: all).
        `keep_columns` (1-D, columns of `input_ids`): logits of those columns only."""
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
        keep = 1 if last_only else 0  # 0: all positions
        if keep_columns is not None:  # virtual input embeddings come before the text's columns
            keep = keep_columns + virtual
        output = model(
            **inputs,
            attention_mask=full_mask,
            position_ids=positions,
            use_cache=use_cache,
            logits_to_keep=keep,
            **{self.cache_argument: cache},
        )
        sliced = last_only or keep_columns is not None
        logits = output.logits if sliced else output.logits[:, virtual:]
        return logits, output.get(self.cache_argument), full_mask

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
            use_cache=False,
            logits_to_keep=keep_last,
            **{self.cache_argument: cache},
        )
        is_embeds = "inputs_embeds" in inputs
        return output.logits[:, virtual:] if keep_last == 0 and is_embeds else output.logits
