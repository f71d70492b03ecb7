"""The parts of benchmarks/gpu_check.py, each run as its own process by that driver:

    python benchmarks/gpu_check_parts.py prepare --work DIR [--dry-run]
    python benchmarks/gpu_check_parts.py train   --work DIR --name llama-bf16-lora --result FILE
    python benchmarks/gpu_check_parts.py scoring --work DIR --result FILE
    python benchmarks/gpu_check_parts.py memory  --work DIR --result FILE

`prepare` writes the demo corpus (emoscale/tiny/demo.py) and two random models with a tokenizer
trained on the demo text: a Llama of Llama-3.2-1B's shape and transformers' GlmForCausalLM of
ChatGLM2-6B's shape at 4 layers (tiny shapes with --dry-run). `train` is the product path,
`accelerate launch emoscale/train.py`, then `emoscale eval` on the saved adapter. `scoring` compares
the three ways of scoring labels. `memory` is benchmarks/gpu_llm_memory.py on ChatGLM2-6B's shape.
Each part writes one JSON object to --result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's emoscale, installed or not

LLAMA_TARGETS = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
GLM_TARGETS = "[q_proj,k_proj,v_proj,o_proj,gate_up_proj,down_proj]"
# Llama-3.2-1B's shape (untied head) and ChatGLM2-6B's at 4 of its 28 layers; the vocabulary is the
# tokenizer's (trained on the demo text), not 128k/65k: a random embedding row would teach nothing.
SHAPES = {
    "llama": dict(arch="llama", hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=64, intermediate_size=8192),
    "glm": dict(arch="glm", hidden_size=4096, num_hidden_layers=4, num_attention_heads=32,
                num_key_value_heads=2, head_dim=128, intermediate_size=13696),
}  # fmt: skip
TINY_SHAPES = {
    "llama": dict(arch="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=128),
    "glm": dict(arch="glm", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, intermediate_size=176),
}  # fmt: skip
# name -> (model, precision, method, launch setup). Covers every precision and method once on the
# 1B Llama, both methods on GLM, and ZeRO-2; not the full product (the loan is 15 minutes).
TRAIN_RUNS = {
    "llama-bf16-lora": ("llama", "bf16", "lora", "single"),
    "llama-8bit-lora": ("llama", "8bit", "lora", "single"),
    "llama-4bit-lora": ("llama", "4bit", "lora", "single"),
    "llama-bf16-ptuning_v2": ("llama", "bf16", "ptuning_v2", "single"),
    "glm-bf16-lora": ("glm", "bf16", "lora", "single"),
    "glm-4bit-ptuning_v2": ("glm", "4bit", "ptuning_v2", "single"),
    "llama-bf16-lora-zero2": ("llama", "bf16", "lora", "zero2"),
}
PRECISION_KEYS = {
    "bf16": [],
    "8bit": ["model.load_in_8bit=true"],
    "4bit": ["model.load_in_4bit=true", "model.bnb_4bit_compute_dtype=bfloat16"],
}
METHOD_KEYS = {
    "lora": ["model.method=lora", "lora.r=8", "train.lr=3e-3"],
    # Prefixes learn slower than LoRA on all linears; test_distributed.py trains them at 3e-2 too.
    "ptuning_v2": ["model.method=ptuning_v2", "ptuning.num_virtual_tokens=32", "train.lr=3e-2"],
}
LEARNED_ACCURACY = 0.6  # test accuracy that counts as learned: chance is 1/3 on the demo's labels
STEPS = 90  # three epochs of the demo's 480 training sentences at batch 16 (the demo trains 180)
# CPU: the code path only. The tiny models need ~60 steps to pass LEARNED_ACCURACY (0.667 measured).
DRY_RUN_STEPS = 10


def environment(dry_run: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env |= {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if dry_run:
        env |= {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    else:  # up to 4 parts at a time share the GPU machine's 16 cores
        env.setdefault("OMP_NUM_THREADS", "4")
    return env


# --- install: pip install -e . offline, never replacing the machine's torch -----------------------

KEEP = ("torch", "torchaudio", "triton")  # the GPU machine's CUDA builds: never replaced
IMPORTS = (
    "emoscale",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "deepspeed",
    "bitsandbytes",
    "pydantic",
    "soundfile",
    "datasets",
    "evaluate",
)


def pip(arguments: list[str], wheels: str | None) -> subprocess.CompletedProcess:
    # --no-index: the GPU machine reaches no registry; --no-build-isolation: the build backend
    # (setuptools) is taken from the environment instead of being fetched.
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
               "--no-build-isolation", *(["--find-links", wheels] if wheels else []), *arguments]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def requirements() -> list[str]:
    import tomllib  # Python >= 3.11, as on the GPU machine (3.12) and in CI

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def install(args) -> dict:
    """`pip install -e .`, timed, after pip's dry run of emoscale's requirements says what it would
    install: if that list holds torch (the pin not met by the machine's build), nothing is
    installed and the part fails. With --dry-run, pip's dry run only."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = work / "pip-report.json"
    started = time.perf_counter()
    # The requirements, not `-e .`: a dry run of `-e .` builds emoscale's metadata, which needs a
    # build backend that CI's fresh venv only gets from the registry.
    resolved = pip(["--dry-run", "--quiet", "--report", str(report), *requirements()], args.wheels)
    result = {"resolve_seconds": round(time.perf_counter() - started, 1)}
    if resolved.returncode != 0:
        print(resolved.stdout + resolved.stderr, file=sys.stderr)
        if args.dry_run or not args.wheels:
            raise RuntimeError("pip could not resolve emoscale's requirements offline")
        # An installed package's version is outside a requirement and no wheel was carried for
        # it: install the carried wheels and emoscale without resolving, and say so.
        result["resolve_error"] = resolved.stderr.strip().splitlines()[-1:]
        started = time.perf_counter()
        wheels = sorted(str(path) for path in Path(args.wheels).glob("*.whl"))
        for arguments in (["--no-deps", *wheels], ["--no-deps", "-e", str(REPO)]):
            subprocess.run(pip(arguments, None).args, cwd=REPO, check=True)
        result |= {"install_seconds": round(time.perf_counter() - started, 1), "route": "--no-deps"}
    else:
        planned = json.loads(report.read_text())["install"]
        would = {item["metadata"]["name"]: item["metadata"]["version"] for item in planned}
        replaced = sorted(name for name in would if name.lower() in KEEP)
        result |= {"would_install": would, "would_replace": replaced}
        if replaced:
            raise RuntimeError(f"pip install -e . would replace {replaced}: not installing")
        if not args.dry_run:
            started = time.perf_counter()
            installed = pip(["--quiet", "-e", str(REPO)], args.wheels)
            print(installed.stdout + installed.stderr, file=sys.stderr)
            installed.check_returncode()
            result |= {
                "install_seconds": round(time.perf_counter() - started, 1),
                "route": "resolved",
            }
    # Every library the parts need imports (on CPU the parts import them anyway: ~10 s of CPU
    # time saved), and which versions they are.
    importing = "[importlib.import_module(n) for n in sys.argv[1:]]; " * (not args.dry_run)
    probe = (f"import importlib, importlib.metadata as m, json, sys; {importing}"
             "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")  # fmt: skip
    versions = subprocess.run([sys.executable, "-c", probe, *IMPORTS], capture_output=True,
                              text=True, check=True, env=environment(args.dry_run))  # fmt: skip
    result["versions"] = json.loads(versions.stdout.strip().splitlines()[-1])
    result["passed"] = True
    return result


# --- prepare ---------------------------------------------------------------------------------------


def make_model(folder: Path, tokenizer, shape: dict, device: str) -> None:
    """A random bf16 model of `shape` with `tokenizer`, saved as a normal model folder."""
    import torch
    from transformers import AutoModelForCausalLM, GlmConfig, LlamaConfig

    shape = dict(shape)
    config_class = {"llama": LlamaConfig, "glm": GlmConfig}[shape.pop("arch")]
    config = config_class(
        **shape,
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        # make_tiny's 0.2 at width 64, scaled by 1/sqrt(width): the same logit scale at any width,
        # so that a frozen random head still separates tokens and adapters can learn on it.
        initializer_range=0.2 * math.sqrt(64 / shape["hidden_size"]),
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def prepare(args) -> dict:
    import torch

    from emoscale.tiny import demo
    from emoscale.tiny.lm import train_tokenizer

    work = Path(args.work)
    data = work / "data"
    if not (data / "test.csv").is_file():
        demo.write_corpus(data)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shapes = TINY_SHAPES if args.dry_run else SHAPES
    made = {}
    for name, shape in shapes.items():
        folder = work / "models" / name
        if not (folder / "config.json").is_file():
            started = time.perf_counter()
            make_model(
                folder, train_tokenizer(demo.tokenizer_texts(), vocab_size=600), shape, device
            )
            made[name] = round(time.perf_counter() - started, 1)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {"data": str(data), "models": sorted(shapes), "seconds_to_make": made, "device": name,
            "torch": torch.__version__, "cuda": torch.version.cuda, "passed": True}  # fmt: skip


# --- train: accelerate launch emoscale/train.py, then emoscale eval on the saved adapter -----------


def run_overrides(work: Path, name: str, steps: int = STEPS) -> list[str]:
    from emoscale.tiny import demo

    model, precision, method, _ = TRAIN_RUNS[name]
    targets = LLAMA_TARGETS if model == "llama" else GLM_TARGETS
    return [
        f"model.path={work / 'models' / model}",
        "model.dtype=bfloat16",
        f"lora.target_modules={targets}",
        "data.dataset=csv",
        f"data.path={work / 'data'}",
        f"data.labels=[{','.join(demo.LABELS)}]",
        "train.batch_size=16",
        f"train.max_steps={steps}",
        "train.epochs=100",  # max_steps ends the run
        "train.warmup_ratio=0.05",
        "train.mixed_precision=bf16",
        "train.log_every_steps=5",
        "eval.metric=accuracy",
        "eval.batch_size=32",
        f"output_dir={work / 'runs' / name}",
        *PRECISION_KEYS[precision],
        *METHOD_KEYS[method],
    ]


def launch_command(setup: str, dry_run: bool) -> list[str]:
    configs = REPO / "accelerate_configs"
    if setup == "zero2":  # one process: ZeRO-2's code path, nothing to shard with
        config = configs / "zero2.yaml"
    else:
        config = configs / ("cpu.yaml" if dry_run else "single_gpu.yaml")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", "1", str(REPO / "emoscale" / "train.py")]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(args) -> dict:
    work, name = Path(args.work), args.name
    model, precision, method, setup = TRAIN_RUNS[name]
    env = environment(args.dry_run)
    run_dir = work / "runs" / name
    steps = DRY_RUN_STEPS if args.dry_run else STEPS
    command = [*launch_command(setup, args.dry_run), *run_overrides(work, name, steps)]
    started = time.perf_counter()
    subprocess.run([*command, "--overwrite"], cwd=REPO, env=env, check=True)
    train_seconds = time.perf_counter() - started

    metrics = json.loads((run_dir / "metrics.json").read_text())
    losses = [
        row["train_loss"] for row in read_jsonl(run_dir / "history.jsonl") if "train_loss" in row
    ]
    run = json.loads((run_dir / "run.json").read_text())
    # Reload: the saved adapter on a freshly loaded base, through `emoscale eval`, one process.
    # Beside the run folder, not in it: --overwrite refuses a run folder holding foreign files.
    reload_dir = work / "reloads" / name
    if reload_dir.is_dir():
        shutil.rmtree(reload_dir)  # this check's own earlier reload: `eval --out` needs it empty
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emoscale", "eval", str(run_dir), "--split", "test",
                    "--out", str(reload_dir)], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    reload_seconds = time.perf_counter() - started
    trained = {row["id"]: row for row in read_jsonl(run_dir / "predictions.jsonl") if row["split"] == "test"}  # fmt: skip
    reloaded = {row["id"]: row for row in read_jsonl(reload_dir / "predictions.jsonl")}
    same = sum(trained[key]["pred"] == row["pred"] for key, row in reloaded.items())
    score_gap = max(
        abs(trained[key]["scores"][label] - value)
        for key, row in reloaded.items()
        for label, value in row["scores"].items()
    )
    accuracy = metrics["test"]["accuracy"]
    checks = {
        "finished": True,
        # A dry run's few steps lower the loss (the answer format) but need not beat chance.
        "learned": losses[-1] < losses[0] and (args.dry_run or accuracy >= LEARNED_ACCURACY),
        "reload_same_labels": same == len(reloaded) == len(trained),
    }
    return {
        "model": model, "precision": precision, "method": method, "setup": setup,
        "steps": steps, "trainable_parameters": run["trainable_parameters"]["trainable"],
        "distributed_type": run["distributed_type"], "mixed_precision": run["mixed_precision"],
        "first_loss": losses[0], "last_loss": losses[-1], "test_accuracy": accuracy,
        "reload_agreement": same / len(reloaded), "reload_max_score_gap": score_gap,
        "train_seconds": round(train_seconds, 1), "reload_seconds": round(reload_seconds, 1),
        "checks": checks, "passed": all(checks.values()),
    }  # fmt: skip


# --- scoring: one pass vs the KV-cache route vs prompt + answer alone -----------------------------

# Largest |difference| in an answer's summed log-likelihood that passes. fp32 routes differ only in
# summation order; bf16 rounds every activation to 8 bits of mantissa (chosen, not derived).
SCORE_TOLERANCE = {"float32": 2e-3, "bfloat16": 0.5}


def alone_scores(model, family, input_ids, attention_mask):
    """Each label's answer scored after each prompt in its own unpadded forward pass: [B, k]."""
    import torch

    rows = []
    for ids, mask in zip(input_ids, attention_mask, strict=True):
        prompt = ids[mask.bool()]
        row = []
        for answer in family.answers:
            answer = torch.tensor(answer, device=ids.device)
            sequence = torch.cat([prompt, answer])[None]
            logits = model(sequence, torch.ones_like(sequence))[0][0].float()
            log_probs = logits[len(prompt) - 1 : -1].log_softmax(-1)
            row.append(log_probs.gather(-1, answer[:, None]).sum())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def scoring_model(folder: str, dtype: str, attention: str, method: str, device):
    """The base model in `dtype` under `attention`, bare or with a random P-Tuning v2 prefix."""
    import torch
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    dtype = getattr(torch, dtype)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attention)
    if method == "ptuning_v2":
        lm = get_peft_model(lm, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8))
    return lm.to(device=device, dtype=dtype).eval()


def route_differences(lm, family, batches: list[dict]) -> dict:
    """Largest |difference| between every two scoring routes, and how often their argmax agrees
    with the one that runs each prompt + answer alone. One-pass only where the model takes it
    (not under flash-attention)."""
    import torch

    from emoscale.models.label_scoring import supports_custom_masks
    from emoscale.models.prompted_lm import PromptedLM

    model = PromptedLM(lm).eval()
    routes = {"one_pass": [], "kv_cache": [], "alone": []}
    with torch.no_grad():
        for batch in batches:
            ids, mask = batch["input_ids"], batch["attention_mask"]
            if supports_custom_masks(lm, model.num_virtual + ids.shape[1] + 16):
                routes["one_pass"].append(family.label_scores(model, ids, mask, True))
            routes["kv_cache"].append(family.label_scores(model, ids, mask, False))
            routes["alone"].append(alone_scores(model, family, ids, mask))
    scores = {name: torch.cat(found).float().cpu() for name, found in routes.items() if found}
    pairs = (("one_pass", "kv_cache"), ("one_pass", "alone"), ("kv_cache", "alone"))
    gaps = {
        f"{a}_vs_{b}": (scores[a] - scores[b]).abs().max().item()
        for a, b in pairs
        if a in scores and b in scores
    }
    alone = scores["alone"].argmax(-1)
    same = min((found.argmax(-1) == alone).float().mean().item() for found in scores.values())
    return {"examples": len(alone), **gaps, "largest": max(gaps.values()), "same_argmax": same}


def scoring(args) -> dict:
    import importlib.util

    import torch

    from emoscale.config import load_config
    from emoscale.data import load_corpus
    from emoscale.models import build_family

    work = Path(args.work)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = [("sdpa", "float32"), ("sdpa", "bfloat16")]
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        settings.append(("flash_attention_2", "bfloat16"))  # its kernels take fp16/bf16 only
    rows = []
    for model_name in ("llama", "glm"):
        overrides = [
            *run_overrides(work, "llama-bf16-lora"),
            f"model.path={work / 'models' / model_name}",
            # GLM fuses gate and up: every LoRA target must name a module (models/adapters.py)
            f"lora.target_modules={LLAMA_TARGETS if model_name == 'llama' else GLM_TARGETS}",
        ]
        config = load_config(overrides=overrides)
        corpus = load_corpus(config.data)
        family = build_family(config, corpus)
        loader = family.dataloader(corpus.split("test")[:32], train=False, seed=0)
        batches = [{k: v.to(device) for k, v in batch.items()} for batch in loader]
        for (attention, dtype), method in itertools.product(settings, ("none", "ptuning_v2")):
            lm = scoring_model(config.model.path, dtype, attention, method, device)
            found = route_differences(lm, family, batches)
            rows.append({"model": model_name, "attention": attention, "dtype": dtype, "method": method,
                         **found, "passed": found["largest"] <= SCORE_TOLERANCE[dtype]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            del lm
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "device": str(device),
        "rows": rows,
        "largest": max(row["largest"] for row in rows),
        "tolerance": SCORE_TOLERANCE,
        "passed": all(row["passed"] for row in rows),
    }


# --- memory: benchmarks/gpu_llm_memory.py on ChatGLM2-6B's shape -----------------------------------


def memory(args) -> dict:
    """gpu_llm_memory.py in a child process (it writes its JSON after every row, so a run stopped
    at its timeout still leaves the rows it measured), beside the estimator's prediction."""
    work = Path(args.work)
    out = work / "memory.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_llm_memory.py"),
               "--models", "chatglm2-6b", "--runners", "emoscale", "--steps", "3", "--warmup", "1",
               "--cache-dir", str(work / "models"), "--json", str(out)]  # fmt: skip
    command += ["--tiny"] * args.dry_run
    subprocess.run(command, cwd=REPO, env=environment(args.dry_run), check=True)
    rows = json.loads(out.read_text())
    for row in rows:
        row["predicted_over_measured"] = row["predicted_gib"] / row["peak_gib"]
    return {"rows": rows, "passed": len(rows) == 6}


PARTS = {
    "install": install,
    "prepare": prepare,
    "train": train,
    "scoring": scoring,
    "memory": memory,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=list(PARTS))
    parser.add_argument("--work", required=True, help="models, data and runs go here")
    parser.add_argument("--name", choices=list(TRAIN_RUNS), help="train: which run")
    parser.add_argument("--result", help="write the part's result (JSON) here")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU")
    parser.add_argument("--wheels", help="install: a folder of wheels for what the machine lacks")
    args = parser.parse_args(argv)
    os.environ.update({k: v for k, v in environment(args.dry_run).items() if k != "PYTHONPATH"})
    import warnings

    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")  # bitsandbytes on CPU
    result = PARTS[args.part](args)
    if args.result:
        Path(args.result).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
