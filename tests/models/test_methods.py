"""Every adaptation method x {fp32, 8-bit, 4-bit} trains on one process and predicts valid labels."""

from __future__ import annotations

import json

import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from peft import PeftModel
from transformers import AutoModelForCausalLM

from emoscale import train
from emoscale.config import load_config
from emoscale.inference import predict
from emoscale.models import adapters

QUANTISATION = {
    "fp32": [],
    "8bit": ["model.load_in_8bit=true"],
    "4bit": ["model.load_in_4bit=true"],
}
METHODS = {
    "lora": [],
    "dora": ["lora.use_dora=true"],
    "ptuning_v2": ["model.method=ptuning_v2", "ptuning.num_virtual_tokens=8"],
    "ptuning_v2_projection": [
        "model.method=ptuning_v2",
        "ptuning.prefix_projection=true",
        "ptuning.init=random",  # an MLP's output cannot be set to given keys/values
        "ptuning.encoder_hidden_size=32",
        "ptuning.num_virtual_tokens=8",
    ],
    "prompt_tuning": ["model.method=prompt_tuning", "ptuning.num_virtual_tokens=8"],
    "p_tuning": [
        "model.method=p_tuning",
        "ptuning.num_virtual_tokens=8",
        "ptuning.encoder_hidden_size=32",
    ],
    "full": ["model.method=full", "train.lr=1e-3"],
}
# full fine-tuning of quantised weights, and DoRA on 8-bit weights on CPU, are refused (test_rules.py)
REFUSED = {("full", "8bit"), ("full", "4bit"), ("dora", "8bit")}
CASES = [(m, q) for m in METHODS for q in QUANTISATION if (m, q) not in REFUSED]


@pytest.mark.parametrize(("method", "quantisation"), CASES)
def test_method_trains_and_predicts(method, quantisation, run_overrides):
    overrides = run_overrides + METHODS[method] + QUANTISATION[quantisation]
    overrides += ["train.max_steps=30", "train.log_every_steps=5", "eval.every_steps=30"]
    if method.startswith(("ptuning", "prompt", "p_tuning")):
        overrides.append("train.lr=3e-2")  # virtual tokens start random and need a larger step
    run_dir, metrics = train.run(load_config(overrides=overrides))
    losses = [
        r["train_loss"]
        for r in map(json.loads, (run_dir / "history.jsonl").read_text().splitlines())
        if "train_loss" in r
    ]
    assert losses[-1] < losses[0], losses  # it learned something
    assert metrics["test"]["num_examples"] == 96
    run = json.loads((run_dir / "run.json").read_text())
    assert (
        0 < run["trainable_parameters"]["trainable"] < run["trainable_parameters"]["total"]
        or method == "full"
    )
    if method != "full":
        # Only the adapter is saved, in PEFT's own format and in safetensors.
        assert (run_dir / "model" / "adapter_model.safetensors").is_file()
        assert not (run_dir / "model" / "model.safetensors").exists()
    if quantisation == "4bit" and method in ("lora", "dora"):
        # predict reloads the 4-bit base: the trainer's own scores (bitsandbytes' CPU inference
        # layout gave DoRA other logits; adapters.keep_4bit_layout_on_cpu)
        saved = [
            row
            for row in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())
            if row["split"] == "test"
        ][:8]
        results = predict.predict(run_dir, [row["text"] for row in saved])
        for result, row in zip(results, saved, strict=True):
            assert result["scores"] == pytest.approx(row["scores"], abs=1e-4)


def test_saved_adapter_reloads_with_peft(run_overrides, tiny_llama):
    run_dir, _ = train.run(
        load_config(overrides=run_overrides + ["train.max_steps=5", "model.method=ptuning_v2"])
    )
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama), run_dir / "model"
    )
    assert model.active_peft_config.num_virtual_tokens == 32  # the paper's prefix length by default


@pytest.mark.skipif(
    not has_avx512bf16(), reason="bitsandbytes repacks 4-bit weights only on AVX512-BF16 CPUs"
)
def test_an_inference_forward_leaves_4bit_weights_trainable(run_overrides):
    """bitsandbytes repacks 4-bit weights for CPU inference at an eval-mode forward without grad
    (on CPUs with AVX512-BF16, as CI's) and trained on the repacked weights afterwards: wrong
    outputs and gradients after P-Tuning v2's prefix init or any evaluation. A training run's
    4-bit layers keep their layout (adapters.keep_4bit_layout_on_cpu)."""
    config = load_config(overrides=run_overrides + ["model.load_in_4bit=true"])
    model = adapters.load_model(config)
    ids = torch.tensor([[1, 5, 9, 23, 40, 7]])

    def train_forward_and_gradient():
        model.train()
        embeddings = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        out = model(inputs_embeds=embeddings).logits.float().sum()
        out.backward()
        return out.item(), embeddings.grad.clone()

    before, grad_before = train_forward_and_gradient()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # an evaluation between training steps
    after, grad_after = train_forward_and_gradient()
    assert after == pytest.approx(before, rel=1e-5)
    torch.testing.assert_close(grad_after, grad_before)
