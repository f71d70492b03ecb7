"""Load a local causal LM and make the parameters that `model.method` trains trainable.

Methods: `none` (zero-shot, nothing trains), `full`, and PEFT's `lora`. PEFT owns the adapter
code and its on-disk format, so an emoscale adapter loads with `PeftModel.from_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from emoscale.config import RunConfig
from emoscale.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_folder(path: str | None) -> Path:
    if path is None:
        raise ConfigError("config key 'model.path': required (a local Hugging Face model folder)")
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"config key 'model.path': model folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"config key 'model.path': {folder} has no config.json (not a Hugging Face model folder)"
        )
    return folder


def load_tokenizer(config: RunConfig) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(
        config.model.path, trust_remote_code=config.model.trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        # Many causal LMs ship without a pad token; padding is masked out, so EOS serves.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: RunConfig) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(
        config.model.path,
        dtype=DTYPES[config.model.dtype],
        trust_remote_code=config.model.trust_remote_code,
    )
    method = config.model.method
    if method == "none":
        model.requires_grad_(False)
    elif method == "lora":
        model = get_peft_model(model, _lora_config(config))
    return model


def _lora_config(config: RunConfig) -> LoraConfig:
    lora = config.lora
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,  # None: PEFT's per-architecture default (q/v projections)
    )


def trainable_parameters(model: torch.nn.Module) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}
