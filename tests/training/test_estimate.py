"""The memory estimator against PEFT's parameter counts, DeepSpeed's and Accelerate's own estimators,
and peaks measured on tiny models on CPU.

How the CPU peak is measured: with `torch.profiler.profile(profile_memory=True)` the CPU allocator
reports every allocation and free, with its running total, to the profiler. The largest total seen
during one training step (minus the total when the profile started) is that step's peak. It is the
allocator's own bookkeeping, not RSS, so it is exact and the same on every run, however busy the
machine is (`cpu_peak_bytes` in emoscale/training/estimate.py).
"""

from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from accelerate.commands.estimate import estimate_training_usage
from peft import (
    LoraConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from transformers import AutoModelForCausalLM, GlmConfig, LlamaConfig

from emoscale.models.prompt_lm import answer_loss
from emoscale.models.prompted_lm import PromptedLM
from emoscale.training.estimate import (
    GIB,
    RunShape,
    activation_bytes,
    count_parameters,
    cpu_peak_bytes,
    estimate,
    estimate_from_folder,
    format_table,
    model_facts,
    peft_config,
)

CHATGLM2_6B = dict(hidden_size=4096, num_hidden_layers=28, num_attention_heads=32, num_key_value_heads=2,
                   intermediate_size=13696, vocab_size=65024, pad_token_id=0)  # fmt: skip
LLAMA_7B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                intermediate_size=11008, vocab_size=32000)  # fmt: skip


def tiny_llama_config(vocab: int = 8000, kv_heads: int = 8) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
    )


def tiny_glm_config() -> GlmConfig:
    return GlmConfig(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        vocab_size=4000,
        pad_token_id=0,
    )


def rows_by_setting(rows):
    return {row.setting: row for row in rows}


# --- trainable parameters ------------------------------------------------------------------------

PEFT_CONFIGS = {
    "lora": lambda: LoraConfig(task_type="CAUSAL_LM", r=8, target_modules=["q_proj", "v_proj"]),
    "ptuning_v2": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=32),
    "ptuning_v2+projection": lambda: PrefixTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=32,
        prefix_projection=True,
        encoder_hidden_size=512,
    ),
    "prompt_tuning": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=32),
    "p_tuning": lambda: PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=32, encoder_hidden_size=512
    ),
}


@pytest.mark.parametrize(
    "config", [tiny_llama_config(), tiny_glm_config(), GlmConfig(**CHATGLM2_6B)]
)
@pytest.mark.parametrize("method", sorted(PEFT_CONFIGS))
def test_trainable_counts_match_peft(config, method):
    with init_empty_weights():
        model = get_peft_model(AutoModelForCausalLM.from_config(config), PEFT_CONFIGS[method]())
    expected = model.get_nb_trainable_parameters()
    name, _, projection = method.partition("+")
    assert (
        count_parameters(config, RunShape(method=name, prefix_projection=bool(projection)))
        == expected
    )


def test_trainable_counts_of_7b_shapes():
    """The numbers in the issue's report, from the shapes alone (r=8 LoRA on q and v; 32 tokens)."""
    glm, llama = GlmConfig(**CHATGLM2_6B), LlamaConfig(**LLAMA_7B)
    h, kv = 4096, 2 * 128  # ChatGLM2: 2 KV groups of head_dim 128
    assert count_parameters(glm, RunShape(method="lora"))[0] == 28 * 8 * ((h + h) + (h + kv))
    assert count_parameters(glm, RunShape(method="ptuning_v2"))[0] == 32 * 28 * 2 * kv
    assert count_parameters(llama, RunShape(method="lora"))[0] == 32 * 8 * 2 * (h + h)
    assert count_parameters(llama, RunShape(method="ptuning_v2"))[0] == 32 * 32 * 2 * h
    assert count_parameters(llama, RunShape(method="prompt_tuning"))[0] == 32 * h
    trainable, total = count_parameters(llama, RunShape(method="full"))
    assert trainable == total == 6_738_415_616


# --- model states against DeepSpeed and Accelerate -------------------------------------------------


def model_states(row) -> float:
    return (row.weights_gib + row.grads_gib + row.optimizer_gib) * GIB


@pytest.mark.parametrize("num_gpus", [1, 8])
def test_full_finetuning_model_states_match_deepspeed(num_gpus):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs, model_to_params
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    config = LlamaConfig(**LLAMA_7B)
    shape = RunShape(method="full", dtype="bfloat16")
    params, _ = count_parameters(config, shape)
    with init_empty_weights():
        _, largest_layer = model_to_params(AutoModelForCausalLM.from_config(config))
    rows = rows_by_setting(estimate(config, shape, num_gpus=num_gpus))

    def deepspeed(stage, offload):
        if stage == 2:
            return estimate_zero2_model_states_mem_needs(params, num_gpus, cpu_offload=offload)[1]
        return estimate_zero3_model_states_mem_needs(
            params, largest_layer, num_gpus, cpu_offload=offload, cpu_offload_params=offload
        )[1]

    assert model_states(rows["zero2"]) == pytest.approx(deepspeed(2, False), rel=1e-6)
    assert model_states(rows["zero2+offload"]) == pytest.approx(deepspeed(2, True), rel=1e-6)
    assert model_states(rows["zero3+offload"]) == pytest.approx(deepspeed(3, True), rel=1e-6)
    # Deliberate difference: DeepSpeed's zero3 formula (4 x largest layer + 18 bytes/param / N)
    # leaves out the 16-bit parameter partition, 2 bytes/param / N; we count it.
    assert model_states(rows["zero3"]) == pytest.approx(
        deepspeed(3, False) + 2 * params / num_gpus, rel=1e-6
    )
    assert model_states(rows["zero3"]) / deepspeed(3, False) < 1.12


def test_full_finetuning_in_fp32_matches_accelerate():
    """`accelerate estimate-memory`: 16 bytes/param in fp32 (weights, grads, two Adam states).
    Its bf16 row (18 bytes/param) is fp32 weights under autocast; RunShape(dtype="bfloat16") is
    16-bit weights with an fp32 master copy, also 16 bytes/param."""
    config = LlamaConfig(**LLAMA_7B)
    params, _ = count_parameters(config, RunShape(method="full"))
    expected = sum(
        estimate_training_usage(4 * params, "float32")[k]
        for k in ("model", "gradients", "optimizer")
    )
    for dtype in ("float32", "bfloat16"):
        none = rows_by_setting(estimate(config, RunShape(method="full", dtype=dtype)))["none"]
        assert model_states(none) == pytest.approx(expected, rel=1e-6)


def test_quantization_and_offload_shrink_the_weights():
    config = LlamaConfig(**LLAMA_7B)
    weights = {
        q: rows_by_setting(estimate(config, RunShape(quantization=q)))["none"].weights_gib
        for q in (None, "8bit", "4bit")
    }
    # Llama-7B: 6.48 B params in quantisable linears, 0.26 B in embeddings + lm_head (kept bf16).
    assert weights[None] == pytest.approx(12.56, abs=0.02)
    assert weights["8bit"] == pytest.approx(6.03 + 0.49, abs=0.05)
    assert weights["4bit"] == pytest.approx(
        6.48e9 * (0.5 + (1 + 4 / 256) / 64) / GIB + 0.49, abs=0.05
    )
    rows = rows_by_setting(estimate(config, RunShape(method="full"), num_gpus=8))
    assert rows["zero3+offload"].total_gib < rows["zero3"].total_gib < rows["zero2"].total_gib
    assert rows["zero2+offload"].cpu_gib == pytest.approx(16 * 6_738_415_616 / GIB)
    assert "zero3+offload" in format_table(list(rows.values()))


def test_estimate_from_a_chatglm2_folder(tmp_path):
    """ChatGLM2's remote-code config.json is read as a native GLM of the same shape."""
    raw = {"model_type": "chatglm", "hidden_size": 4096, "num_layers": 28, "num_attention_heads": 32,
           "multi_query_group_num": 2, "kv_channels": 128, "ffn_hidden_size": 13696,
           "padded_vocab_size": 65024}  # fmt: skip
    (tmp_path / "config.json").write_text(__import__("json").dumps(raw))
    rows = estimate_from_folder(tmp_path, RunShape(method="lora", gradient_checkpointing=True))
    assert rows_by_setting(rows)["none"].fits_24gb
    assert rows == estimate(
        GlmConfig(**CHATGLM2_6B), RunShape(method="lora", gradient_checkpointing=True)
    )


# --- activations against measured CPU peaks ----------------------------------------------------------


def measured_peak(config, shape: RunShape, pad: bool = False) -> int:
    """Peak bytes allocated during one forward + backward of a real model on CPU."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, shape.dtype))
    if shape.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    adapter = peft_config(config, shape)
    model = get_peft_model(model, adapter) if adapter else model
    model.train()
    ids = torch.randint(0, config.vocab_size, (shape.batch_size, shape.seq_len))
    mask = torch.ones_like(ids)
    if pad:
        mask[0, -5:] = 0

    def step():
        # The model's output (logits, cache) is dropped before backward, as a training loop does.
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()

    if shape.logit_columns:  # emoscale's loss: targets (and logits) at the last columns only
        targets = torch.full_like(ids, -100)
        targets[:, -shape.logit_columns :] = ids[:, -shape.logit_columns :]
        batch = {"input_ids": ids, "attention_mask": mask, "targets": targets}

        def step():
            answer_loss(PromptedLM(model), batch).backward()

    return cpu_peak_bytes(step)


CPU_CASES = {
    # name: (config, RunShape kwargs, pad)
    "lora b8 t128": (tiny_llama_config(), {}, False),
    "lora b4 t64": (tiny_llama_config(), {"batch_size": 4, "seq_len": 64}, False),
    "lora b8 t128 checkpointing": (tiny_llama_config(), {"gradient_checkpointing": True}, False),
    # A small vocabulary: the layers' saved tensors, not the logits, make most of the peak.
    "lora vocab512": (tiny_llama_config(vocab=512), {}, False),
    "lora vocab512 checkpointing": (
        tiny_llama_config(vocab=512),
        {"gradient_checkpointing": True},
        False,
    ),
    "lora bf16": (tiny_llama_config(), {"dtype": "bfloat16", "batch_size": 4}, False),
    "ptuning_v2 gqa padded": (tiny_llama_config(kv_heads=2), {"method": "ptuning_v2"}, True),
    "lora glm gqa padded": (tiny_glm_config(), {"batch_size": 4}, True),
    # emoscale's answer-only loss: logits at 8 of 128 columns, so the layers make the peak
    "lora answer columns": (tiny_llama_config(), {"logit_columns": 8}, False),
    "ptuning_v2 answer columns": (
        tiny_llama_config(),
        {"method": "ptuning_v2", "logit_columns": 8},
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CPU_CASES))
def test_activations_match_measured_cpu_peak(case):
    config, kwargs, pad = CPU_CASES[case]
    shape = RunShape(
        **{"batch_size": 8, "seq_len": 128, "dtype": "float32", "device": "cpu", **kwargs}
    )
    facts = model_facts(config, shape)
    measured = measured_peak(config, shape, pad) - 4 * facts.trainable  # adapters' grads are fp32
    predicted = activation_bytes(config, shape, facts)
    print(f"{case}: measured {measured / 2**20:.1f} MiB, predicted {predicted / 2**20:.1f} MiB")
    assert predicted == pytest.approx(measured, rel=0.20)
