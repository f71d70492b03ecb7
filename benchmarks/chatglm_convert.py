"""The figures of `emoscale convert chatglm` (issue 13): logits against the ChatGLM2 forward in fp32
and bf16, what bf16 does to the remote code's rotary positions, tokenizer agreement with
SentencePiece, LoRA's trainable parameters at the ChatGLM2-6B shape, and (--six-b) the time and
peak memory of converting a 6B-shaped checkpoint.

    python benchmarks/chatglm_convert.py --json runs/bench/chatglm_convert.json
    python benchmarks/chatglm_convert.py --six-b /tmp/chatglm2-6b-random   # + 12 GB written, removed

The tiny checkpoint, its ChatGLM2 reference forward and the test sentences are the tests' own
(tests/inference/chatglm_checkpoint.py): generated text, no download.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "inference"))  # the tests' checkpoint writer and reference

import chatglm_checkpoint as ckpt  # noqa: E402

from emoscale.inference.convert.chatglm import convert, glm_config  # noqa: E402

CHATGLM2_6B = ckpt.chatglm2_config(65024) | {
    "hidden_size": 4096,
    "num_layers": 28,
    "num_attention_heads": 32,
    "multi_query_group_num": 2,
    "kv_channels": 128,
    "ffn_hidden_size": 13696,
    "torch_dtype": "bfloat16",
}


def logits_figures(work: Path) -> dict:
    from transformers import AutoModelForCausalLM

    texts = ckpt.english(2000, seed=99) + ckpt.chinese(1500, seed=1)
    src, config, weights = ckpt.write_checkpoint(work / "src", texts)
    out = convert(src, work / "out")
    generator = torch.Generator().manual_seed(0)
    figures = {}
    for length in (64, 512):
        ids = torch.randint(3, config["padded_vocab_size"] - 64, (2, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[1, : length // 4] = 0  # left padding in the second row
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        real = mask.bool()
        row = {}
        for dtype in (torch.float32, torch.bfloat16):
            model = AutoModelForCausalLM.from_pretrained(out, dtype=dtype).eval()
            cast = {name: tensor.to(dtype) for name, tensor in weights.items()}
            with torch.no_grad():
                got = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
                # the remote code in this dtype: its rotary table too (bf16 positions and angles)
                original = ckpt.reference_logits(cast, config, ids, mask, positions)
                # the same with the rotary table in fp32, as the converted model computes it
                fp32_rope = ckpt.reference_logits(cast, config, ids, mask, positions, torch.float32)
                exact = ckpt.reference_logits(weights, config, ids, mask, positions)
            name = str(dtype).removeprefix("torch.")
            row[name] = {
                "vs_original_same_dtype": _diff(original, got, real),
                "vs_original_fp32_rotary": _diff(fp32_rope, got, real),
                "vs_fp32_original": _diff(exact, got, real),
                "original_same_dtype_vs_fp32_original": _diff(exact, original, real),
            }
        figures[f"{length}_tokens"] = row
    return figures


def _diff(a: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> float:
    return (a.float() - b.float())[real].abs().max().item()


def rotary_figures() -> dict:
    """How far the remote code's bf16 rotary angles are from the exact ones, by position range."""
    rot = 64  # kv_channels 128 // 2
    exact = ckpt.rotary_table(2048, rot, torch.float64)
    bf16 = ckpt.rotary_table(2048, rot, torch.bfloat16).double()
    angle_error = torch.atan2(
        exact[..., 1] * bf16[..., 0] - exact[..., 0] * bf16[..., 1],
        exact[..., 0] * bf16[..., 0] + exact[..., 1] * bf16[..., 1],
    ).abs()
    positions = torch.arange(2048, dtype=torch.bfloat16).double()
    ranges = {
        "0-255": (0, 256),
        "256-511": (256, 512),
        "512-1023": (512, 1024),
        "1024-2047": (1024, 2048),
    }
    return {
        name: {
            "max_angle_error_rad": angle_error[a:b].max().item(),
            "max_position_error": (positions[a:b] - torch.arange(a, b)).abs().max().item(),
        }
        for name, (a, b) in ranges.items()
    }


def tokenizer_figures(work: Path) -> dict:
    import sentencepiece as spm
    from transformers import AutoTokenizer

    texts = ckpt.english(1500, seed=3) + ckpt.chinese(1500, seed=4) + ckpt.mixed(1500, seed=5)
    src = work / "src"
    result = {}
    for name, options in {
        "nmt_nfkc": {},
        "identity": {"normalization_rule_name": "identity", "remove_extra_whitespaces": False},
    }.items():
        folder = work / f"tok-{name}"
        shutil.copytree(src, folder)
        ckpt.train_sentencepiece(
            texts[:1500] + texts[1500:3000], folder / "tokenizer.model", **options
        )
        tokenizer = AutoTokenizer.from_pretrained(convert(folder, work / f"tok-{name}-out"))
        pieces = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        prefix = tokenizer.convert_tokens_to_ids(["[gMASK]", "<sop>"])
        got = tokenizer(texts)["input_ids"]
        agree = sum(ids == prefix + pieces.encode(t) for t, ids in zip(texts, got, strict=True))
        result[name] = {"agree": agree, "sentences": len(texts)}
    return result


def lora_figures() -> dict:
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = glm_config(CHATGLM2_6B)
    result = {}
    for name, targets in {
        "q_proj,v_proj": ["q_proj", "v_proj"],
        "q_proj,k_proj,v_proj": ["q_proj", "k_proj", "v_proj"],
    }.items():
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
        trainable, total = peft.get_nb_trainable_parameters()
        result[name] = {"trainable": trainable, "total": total}
    # The paper's LoRA under the remote code: one adapter on the fused query_key_value (4096 -> 4608).
    h, fused = 4096, (32 + 2 * 2) * 128
    result["query_key_value (remote code)"] = {"trainable": 28 * 8 * (h + fused)}
    return result


def six_b(folder: Path) -> dict:
    """Write a 6B-shaped random ChatGLM2 checkpoint (bf16, 7 .bin shards), convert it in a child
    process, and report time and the child's peak resident memory."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CHATGLM2_6B))
    texts = ckpt.english(2000, seed=99) + ckpt.chinese(1500, seed=1)
    ckpt.train_sentencepiece(texts, folder / "tokenizer.model")
    names = list(_shapes(CHATGLM2_6B))
    # 6.2e9 fresh random numbers take longer on 2 busy cores than the conversion itself: tile one
    # random block instead (the conversion's cost is reading and writing, not the values).
    block = torch.randn(1 << 22, dtype=torch.bfloat16) * 0.02
    shards, weight_map, started = 7, {}, time.time()
    for number in range(shards):
        shard = f"pytorch_model-{number + 1:05d}-of-{shards:05d}.bin"
        part = names[number * len(names) // shards : (number + 1) * len(names) // shards]
        tensors = {n: _random(_shapes(CHATGLM2_6B)[n], block) for n in part}
        torch.save(tensors, folder / shard)
        weight_map |= dict.fromkeys(part, shard)
        del tensors
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    written = time.time() - started
    out = folder.parent / (folder.name + "-converted")
    code = "import sys; from emoscale.inference.convert.chatglm import convert; convert(sys.argv[1], sys.argv[2])"
    started = time.time()
    subprocess.run([sys.executable, "-c", code, str(folder), str(out)], check=True)
    seconds = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    shutil.rmtree(out)
    shutil.rmtree(folder)
    return {
        "write_seconds": round(written, 1),
        "convert_seconds": round(seconds, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "output_gib": round(size / 2**30, 2),
    }


def _random(shape: tuple, block: torch.Tensor) -> torch.Tensor:
    count = math.prod(shape)
    return block.repeat(count // block.numel() + 1)[:count].reshape(shape).clone()


def _shapes(config: dict) -> dict:
    h, hn, ffn, vocab = (
        config["hidden_size"],
        config["kv_channels"],
        config["ffn_hidden_size"],
        config["padded_vocab_size"],
    )
    qkv = (config["num_attention_heads"] + 2 * config["multi_query_group_num"]) * hn
    shapes = {
        "transformer.embedding.word_embeddings.weight": (vocab, h),
        "transformer.rotary_pos_emb.inv_freq": (hn // 4,),
    }
    for layer in range(config["num_layers"]):
        p = f"transformer.encoder.layers.{layer}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "self_attention.query_key_value.weight": (qkv, h),
            p + "self_attention.query_key_value.bias": (qkv,),
            p + "self_attention.dense.weight": (h, config["num_attention_heads"] * hn),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.dense_h_to_4h.weight": (2 * ffn, h),
            p + "mlp.dense_4h_to_h.weight": (h, ffn),
        }
    shapes["transformer.encoder.final_layernorm.weight"] = (h,)
    shapes["transformer.output_layer.weight"] = (vocab, h)
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--six-b", help="folder (must not exist) for a 6B-shaped checkpoint; 12 GB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        figures = {
            "logits_max_abs_diff": logits_figures(Path(work)),
            "bf16_rotary_of_the_remote_code": rotary_figures(),
            "tokenizer_agreement": tokenizer_figures(Path(work)),
            "lora_r8_trainable_at_chatglm2_6b": lora_figures(),
        }
    if args.six_b:
        figures["convert_6b"] = six_b(Path(args.six_b))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
