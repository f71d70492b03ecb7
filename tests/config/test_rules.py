"""Every incompatible combination stops at config time with its one-line reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoscale.config import load_config
from emoscale.config.rules import deepspeed_zero_stage
from emoscale.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def zero3(monkeypatch):
    """The environment `accelerate launch --config_file accelerate_configs/zero3.yaml` sets up."""
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(REPO / "ds_configs" / "zero3.json"))


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=list(overrides))
    return str(caught.value)


def test_stage_is_read_from_the_deepspeed_config(zero3):
    assert deepspeed_zero_stage() == 3


def test_no_deepspeed_means_no_stage(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert deepspeed_zero_stage() is None


def test_one_quantisation_at_a_time():
    assert error_of("model.load_in_8bit=true", "model.load_in_4bit=true") == (
        "config keys 'model.load_in_8bit' and 'model.load_in_4bit': choose one"
    )


def test_full_finetuning_of_quantised_weights():
    assert error_of("model.method=full", "model.load_in_4bit=true") == (
        "config key 'model.method': full fine-tuning cannot update 8-bit/4-bit weights; use lora or ptuning_v2"
    )


def test_prefix_tuning_with_gradient_checkpointing():
    assert error_of("model.method=ptuning_v2", "train.gradient_checkpointing=true") == (
        "config key 'train.gradient_checkpointing': not with model.method=ptuning_v2 "
        "(checkpointed layers drop the learned prefix key/values)"
    )


def test_prefix_init_from_tokens_needs_a_plain_prefix():
    # The default init copies keys/values; an MLP in front of the prefix cannot take them.
    assert error_of("model.method=ptuning_v2", "ptuning.prefix_projection=true") == (
        "config key 'ptuning.init': tokens (the default) copies the model's own keys/values "
        "into the prefix, which ptuning.prefix_projection=true cannot take; set ptuning.init=random"
    )
    assert error_of(
        "model.method=ptuning_v2", "ptuning.init=random", "ptuning.init_text=Review:"
    ) == ("config key 'ptuning.init_text': only read with ptuning.init=tokens")


def test_dora_needs_lora():
    assert error_of("model.method=prompt_tuning", "lora.use_dora=true") == (
        "config key 'lora.use_dora': only with model.method=lora (got 'prompt_tuning')"
    )


def test_8bit_under_zero3(zero3):
    assert error_of("model.load_in_8bit=true") == (
        "config key 'model.load_in_8bit': ZeRO-3 cannot shard LLM.int8 weights; use ZeRO-2 or load_in_4bit"
    )


def test_4bit_under_zero3_needs_matching_storage(zero3):
    assert error_of("model.load_in_4bit=true", "model.dtype=bfloat16") == (
        "config key 'model.bnb_4bit_quant_storage': under ZeRO-3 it must equal model.dtype ('bfloat16'), got None"
    )
    config = load_config(
        overrides=[
            "model.load_in_4bit=true",
            "model.dtype=bfloat16",
            "model.bnb_4bit_quant_storage=bfloat16",
        ]
    )
    assert config.model.bnb_4bit_quant_storage == "bfloat16"


def test_generate_under_zero3_needs_synced_gpus(zero3):
    assert error_of("eval.mode=generate", "eval.synced_gpus=false") == (
        "config key 'eval.synced_gpus': must not be false for generate-mode evaluation under ZeRO-3"
    )
    assert load_config(overrides=["eval.mode=generate"]).eval.synced_gpus is None  # automatic: on


def test_fp16_needs_a_gpu():
    assert error_of("train.mixed_precision=fp16") == (
        "config key 'train.mixed_precision': fp16 needs a CUDA GPU; use bf16 or no on CPU"
    )


def test_dora_on_int8_is_refused_on_cpu():
    assert error_of("lora.use_dora=true", "model.load_in_8bit=true") == (
        "config key 'lora.use_dora': DoRA on 8-bit weights fails on CPU (bitsandbytes drops the int8 scales); "
        "use load_in_4bit or a GPU"
    )


def test_skipping_nonfinite_batches_while_accumulating_on_several_ranks(monkeypatch):
    message = (
        "config key 'train.skip_nonfinite': not with train.grad_accum > 1 on several "
        "processes or under DeepSpeed (a skipped batch would skip its gradient sync); "
        "use grad_accum=1"
    )
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch sets it for DDP
    assert error_of("train.skip_nonfinite=true", "train.grad_accum=2") == message
    load_config(overrides=["train.skip_nonfinite=true", "train.grad_accum=1"])  # allowed
    monkeypatch.setenv("WORLD_SIZE", "1")
    load_config(overrides=["train.skip_nonfinite=true", "train.grad_accum=2"])  # one process: fine


def test_skipping_nonfinite_batches_under_deepspeed_accumulation(zero3):
    assert error_of("train.skip_nonfinite=true", "train.grad_accum=2").startswith(
        "config key 'train.skip_nonfinite': not with train.grad_accum > 1"
    )


def test_gradient_accumulation_is_set_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"
    )  # launch --gradient_accumulation_steps 4
    assert error_of("train.grad_accum=2") == (
        "config key 'train.grad_accum': is 2 but the launcher sets gradient accumulation 4; "
        "set it in the run config only"
    )
    load_config(overrides=["train.grad_accum=4"])
    monkeypatch.delenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    ds = tmp_path / "ds.json"
    ds.write_text('{"gradient_accumulation_steps": 8, "zero_optimization": {"stage": 2}}')
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(ds))
    assert "launcher sets gradient accumulation 8" in error_of("train.grad_accum=1")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(REPO / "ds_configs" / "zero2.json"))
    load_config(overrides=["train.grad_accum=3"])  # "auto": filled from the run config


def test_train_on_dev_needs_the_last_model_and_no_early_stopping():
    assert error_of("data.train_on_dev=true") == (
        "config key 'data.train_on_dev': dev then trains, so it cannot pick the model; "
        "set eval.select=last"
    )
    assert error_of(
        "data.train_on_dev=true", "eval.select=last", "train.early_stopping_patience=2"
    ) == (
        "config key 'data.train_on_dev': dev then trains, so it cannot stop training early; "
        "leave train.early_stopping_patience unset"
    )
    assert load_config(overrides=["data.train_on_dev=true", "eval.select=last"]).data.train_on_dev
