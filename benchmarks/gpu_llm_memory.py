"""Peak memory, tokens/s and MFU of one LLM training step, emoscale's vs transformers.Trainer's,
beside the estimator's prediction (emoscale/training/estimate.py).

    python benchmarks/gpu_llm_memory.py --json runs/gpu_llm_memory.json            # one GPU
    python benchmarks/gpu_llm_memory.py --models llama-7b --precisions 4bit        # a subset
    python benchmarks/gpu_llm_memory.py --tiny --steps 2                           # CPU smoke run

Models: a ChatGLM2-6B-shaped GlmForCausalLM and a Llama-7B-shaped LlamaForCausalLM with random
weights (nothing is downloaded). Each is saved once to --cache-dir in bf16, then loaded in bf16,
LLM.int8 (8bit) or NF4 with double quantisation (4bit) through BitsAndBytesConfig, as a real
checkpoint would be. Methods: LoRA r=8 and P-Tuning v2 (prefix tuning, 32 virtual tokens).
Batch 16 x 128 tokens, AdamW, gradient clipping at 1.0, no autocast (bf16 weights, fp32 adapters).

- emoscale: emoscale.models.prompted_lm.PromptedLM around the PEFT model, with the loss of
  models.prompt_lm.answer_loss (PromptLMFamily.loss: logits only where an answer token is
  predicted), in a plain loop.
- trainer: transformers.Trainer on the same PEFT model and batches (labels on the answer tokens).

Peak memory: torch.cuda.max_memory_allocated over all steps (on CPU: the model's bytes plus the
allocator's peak, see estimate.cpu_peak_bytes). MFU: model FLOPs per step (forward 2 x linear
params x tokens + attention; backward the same for input gradients, attention twice, plus weight
gradients of trainable linears only) over the step time, against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import (
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    GlmConfig,
    LlamaConfig,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging as transformers_logging

from emoscale.models.prompt_lm import answer_loss
from emoscale.models.prompted_lm import PromptedLM
from emoscale.training.estimate import (
    GIB,
    RunShape,
    cpu_peak_bytes,
    estimate,
    model_facts,
    peft_config,
)

SHAPES = {
    "chatglm2-6b": GlmConfig(hidden_size=4096, num_hidden_layers=28, num_attention_heads=32, num_key_value_heads=2,
                             head_dim=128, intermediate_size=13696, vocab_size=65024, pad_token_id=0),
    "llama-7b": LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                            intermediate_size=11008, vocab_size=32000),
}  # fmt: skip
TINY_SHAPES = {
    "chatglm2-6b": GlmConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=16, intermediate_size=176, vocab_size=1000, pad_token_id=0),
    "llama-7b": LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                            intermediate_size=176, vocab_size=1000),
}  # fmt: skip
PRECISIONS = {"bf16": None, "8bit": "8bit", "4bit": "4bit"}  # -> RunShape.quantization
METHODS = ("lora", "ptuning_v2")
PEAK_BF16_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "4090": 165.0,
    "3090": 71.0,
}
ANSWER_TOKENS = 2  # label word + EOS: the only tokens with a target, as in emoscale's prompts


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes on CPU (what the test runs)"
    )
    parser.add_argument(
        "--models", default=",".join(SHAPES), help="comma-separated: chatglm2-6b,llama-7b"
    )
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS), help="comma-separated: bf16,8bit,4bit"
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated: lora,ptuning_v2"
    )
    parser.add_argument(
        "--runners", default="emoscale,trainer", help="comma-separated: emoscale,trainer"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps, after --warmup steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--cache-dir", default=str(Path(tempfile.gettempdir()) / "emoscale-bench-models")
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="dense bf16 peak; default by GPU name"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.seq_len = min(args.batch_size, 4), min(args.seq_len, 32)
    return args


# --- models and batches ------------------------------------------------------------------------------


def random_model_folder(name: str, config, cache_dir: Path, device: torch.device) -> Path:
    """A bf16 checkpoint with random weights, written once: loading it with BitsAndBytesConfig
    quantises it exactly as a downloaded checkpoint would be."""
    folder = cache_dir / f"{name}-{config.hidden_size}x{config.num_hidden_layers}"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
    return folder


def load_model(folder: Path, precision: str, device: torch.device) -> torch.nn.Module:
    quantization = None
    if precision == "8bit":
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    elif precision == "4bit":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=torch.bfloat16,
        quantization_config=quantization,
        device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"},
    )


def synthetic_batches(
    vocab: int, batch: int, seq: int, count: int, device: torch.device
) -> list[dict]:
    """Right-padded prompt + answer rows, like PromptLMFamily's training batches: the last row is
    4 tokens shorter, so models see a padding mask; only the answer tokens have targets."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        ids = torch.randint(3, vocab, (batch, seq), generator=generator)
        mask = torch.ones_like(ids)
        mask[-1, -4:] = 0
        targets = torch.full_like(ids, -100)
        lengths = mask.sum(1)
        for row, length in enumerate(lengths.tolist()):
            targets[row, length - ANSWER_TOKENS : length] = ids[
                row, length - ANSWER_TOKENS : length
            ]
        batches.append(
            {
                "input_ids": ids.to(device),
                "attention_mask": mask.to(device),
                "targets": targets.to(device),
            }
        )
    return batches


# --- the two training steps ---------------------------------------------------------------------------


def run_emoscale(lm: torch.nn.Module, batches: list[dict], warmup: int, sync) -> float:
    """Seconds for the steps after `warmup`."""
    model = PromptedLM(lm)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    start = None
    for step, batch in enumerate(batches):
        if step == warmup:
            sync()
            start = time.perf_counter()
        answer_loss(model, batch).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - start


class StepTimer(TrainerCallback):
    def __init__(self, warmup: int, sync):
        self.warmup, self.sync, self.start, self.end = warmup, sync, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.sync()
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.sync()
        self.end = time.perf_counter()


def run_trainer(
    lm: torch.nn.Module, batches: list[dict], warmup: int, sync, use_cpu: bool
) -> float:
    rows = [
        {"input_ids": ids, "attention_mask": mask, "labels": targets}
        for batch in batches
        for ids, mask, targets in zip(
            batch["input_ids"], batch["attention_mask"], batch["targets"], strict=True
        )
    ]
    timer = StepTimer(warmup, sync)
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=len(batches[0]["input_ids"]),
            max_steps=len(batches),
            learning_rate=1e-4,
            optim="adamw_torch",
            max_grad_norm=1.0,
            lr_scheduler_type="constant",
            bf16=False,  # weights are bf16 already; no autocast, as in the emoscale step
            logging_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_pin_memory=False,
            use_cpu=use_cpu,
        )
        trainer = Trainer(model=lm, args=arguments, train_dataset=rows, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        trainer.train()
    return timer.end - timer.start


# --- measuring ---------------------------------------------------------------------------------------


def train_flops(config, shape: RunShape, facts) -> float:
    """Model FLOPs of one training step (see the module docstring)."""
    tokens = shape.batch_size * shape.seq_len
    prefix = shape.num_virtual_tokens if shape.method == "ptuning_v2" else 0
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim = config.num_attention_heads * head_dim
    linear = config.num_hidden_layers * sum(
        n_in * n_out for _, _, n_in, n_out in facts.layer_linears
    )
    linear += config.hidden_size * config.vocab_size  # lm_head
    trainable_linear = facts.trainable if shape.method == "lora" else 0
    forward = (
        2 * linear * tokens
        + 4 * config.num_hidden_layers * tokens * (shape.seq_len + prefix) * q_dim
    )
    attention = forward - 2 * linear * tokens
    return 2 * forward + attention + 2 * trainable_linear * tokens


def peak_flops(args, device: torch.device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)


def measure(run, model: torch.nn.Module, device: torch.device) -> tuple[float, int]:
    """(seconds returned by run(), peak bytes including the model) for `run`."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        seconds = run()
        return seconds, torch.cuda.max_memory_allocated(device)
    state = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    result = {}
    peak = cpu_peak_bytes(lambda: result.setdefault("seconds", run()))
    return result["seconds"], state + peak


def bench_one(
    args, name: str, folder: Path, precision: str, method: str, runner: str, device
) -> dict:
    config = (TINY_SHAPES if args.tiny else SHAPES)[name]
    steps = args.warmup + args.steps
    batches = synthetic_batches(config.vocab_size, args.batch_size, args.seq_len, steps, device)
    # emoscale's loss computes logits only where an answer token is predicted; Trainer's at
    # every position: the estimate counts each runner's own.
    answer_columns = int((batches[0]["targets"][:, 1:] != -100).any(0).sum())
    shape = RunShape(
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        method=method,
        quantization=PRECISIONS[precision],
        device=device.type,
        logit_columns=answer_columns if runner == "emoscale" else None,
    )
    facts = model_facts(config, shape)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    lm = get_peft_model(load_model(folder, precision, device), peft_config(config, shape))
    if runner == "emoscale":
        run = partial(run_emoscale, lm, batches, args.warmup, sync)
    else:
        run = partial(run_trainer, lm, batches, args.warmup, sync, device.type == "cpu")
    seconds, peak_bytes = measure(run, lm, device)
    del lm, run
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    step_seconds, peak = seconds / args.steps, peak_flops(args, device)
    return {
        "model": name, "precision": precision, "method": method, "runner": runner,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps,
        "trainable_params": facts.trainable,
        "peak_gib": peak_bytes / GIB,
        "predicted_gib": estimate(config, shape)[0].total_gib,  # the row without DeepSpeed
        "tokens_per_s": args.batch_size * args.seq_len / step_seconds,
        "mfu": train_flops(config, shape, facts) / step_seconds / peak if peak else None,
    }  # fmt: skip


def write_json(results: list[dict], path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2))


def benchmark(args) -> list[dict]:
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    results = []
    for name in args.models.split(","):
        shapes = TINY_SHAPES if args.tiny else SHAPES
        folder = random_model_folder(name, shapes[name], Path(args.cache_dir), device)
        for precision, method, runner in itertools.product(
            args.precisions.split(","), args.methods.split(","), args.runners.split(",")
        ):
            results.append(bench_one(args, name, folder, precision, method, runner, device))
            print(format_result(results[-1]), flush=True)
            write_json(results, args.json)  # after every row: a run stopped early keeps them
    return results


def format_result(r: dict) -> str:
    mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "    -"
    return (
        f"{r['model']:<12} {r['precision']:<5} {r['method']:<11} {r['runner']:<9}"
        f" peak {r['peak_gib']:7.3f} GiB  predicted {r['predicted_gib']:7.3f} GiB"
        f" ({r['predicted_gib'] / r['peak_gib'] - 1:+6.1%})  {r['tokens_per_s']:9.0f} tok/s  MFU {mfu}"
    )


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")  # bitsandbytes on CPU, per matmul
    transformers_logging.disable_progress_bar()
    results = benchmark(args)
    write_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
