"""A tiny random ChatGLM2 checkpoint in the real on-disk format, and the ChatGLM2 forward pass.

The format follows THUDM's chatglm2-6b folder: config.json with the remote code's keys, weights
named as modeling_chatglm.py names them (fused query_key_value, rotary inv_freq buffer) in
`pytorch_model-0000k-of-0000n.bin` shards written with torch.save plus their index, and a
SentencePiece BPE tokenizer.model (byte fallback) trained here on generated text.

`reference_logits` is the ChatGLM2 architecture written for these tests from the remote code's
description ([s, b, h] layout turned into [b, s, h]; the rotary table computed in the weights'
dtype, as the remote code does), independent of transformers' GLM classes.
"""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import sentencepiece as spm
import torch

from emoscale.tiny import demo

HAN = [chr(code) for code in range(0x4E00, 0x4E00 + 400)]
EMOJI = ["😀", "🎉", "👍🏽", "❤️", "🇨🇳", "🙃", "😡"]
LITERAL_SPECIAL = ["[gMASK]", "<sop>", "sop", "eop", "</s>", "<unk>", "<s>", "[MASK]", "<|user|>"]
SPACES = ["  ", "\t", "\n", "   ", " ", "\n\n", " \t "]


def english(count: int, seed: int) -> list[str]:
    texts = [text for text, _ in demo.sentences(count, seed=seed)]
    prompt = "Classify the sentiment of the sentence to Positive, Negative or Neutral: "
    return texts + [prompt + text for text in texts[: count // 10]]


def chinese(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ends = ["。", "！", "？", "，真的", ""]
    return [
        "".join(rng.choice(HAN) for _ in range(rng.randint(2, 24))) + rng.choice(ends)
        for _ in range(count)
    ]


def mixed(count: int, seed: int) -> list[str]:
    """Sentences with emoji, runs of whitespace and literal special-token text in them."""
    rng = random.Random(seed)
    pool = english(400, seed) + chinese(400, seed)
    rows = []
    for _ in range(count):
        parts = [rng.choice(pool), rng.choice(EMOJI), rng.choice(SPACES), rng.choice(pool)]
        parts.append(rng.choice(LITERAL_SPECIAL))
        rng.shuffle(parts)
        rows.append("".join(parts))
    return rows


def train_sentencepiece(texts: list[str], path: Path, vocab_size: int = 1000, **options) -> Path:
    """A SentencePiece BPE model with byte fallback, as ChatGLM2's tokenizer.model."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.9995,
        minloglevel=2,
        **options,
    )
    path.write_bytes(buffer.getvalue())
    return path


def chatglm2_config(vocab: int, **shape) -> dict:
    """ChatGLM2-6B's config.json with a tiny shape."""
    return {
        "_name_or_path": "THUDM/chatglm2-6b",
        "model_type": "chatglm",
        "architectures": ["ChatGLMModel"],
        "auto_map": {
            "AutoConfig": "configuration_chatglm.ChatGLMConfig",
            "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
            "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
        },
        "add_bias_linear": False,
        "add_qkv_bias": True,
        "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False,
        "attention_dropout": 0.0,
        "attention_softmax_in_fp32": True,
        "bias_dropout_fusion": True,
        "ffn_hidden_size": shape.get("ffn_hidden_size", 96),
        "fp32_residual_connection": False,
        "hidden_dropout": 0.0,
        "hidden_size": shape.get("hidden_size", 64),
        "kv_channels": shape.get("kv_channels", 16),
        "layernorm_epsilon": 1e-05,
        "multi_query_attention": True,
        "multi_query_group_num": shape.get("multi_query_group_num", 2),
        "num_attention_heads": shape.get("num_attention_heads", 4),
        "num_layers": shape.get("num_layers", 2),
        "original_rope": True,
        "padded_vocab_size": vocab,
        "post_layer_norm": True,
        "rmsnorm": True,
        "seq_length": 32768,
        "use_cache": True,
        "torch_dtype": "float32",
        "transformers_version": "4.27.1",
        "tie_word_embeddings": False,
        "eos_token_id": 2,
    }


def random_weights(config: dict, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Every tensor of ChatGLM2's state dict, under its names, random (norms near 1)."""
    generator = torch.Generator().manual_seed(seed)
    h, hn = config["hidden_size"], config["kv_channels"]
    qkv = (config["num_attention_heads"] + 2 * config["multi_query_group_num"]) * hn

    def rand(*size, scale=0.08, base=0.0):
        return (base + scale * torch.randn(*size, generator=generator)).to(dtype)

    weights = {"transformer.embedding.word_embeddings.weight": rand(config["padded_vocab_size"], h)}
    rot = hn // 2
    weights["transformer.rotary_pos_emb.inv_freq"] = (
        1.0 / 10000 ** (torch.arange(0, rot, 2).float() / rot)
    ).to(dtype)
    for layer in range(config["num_layers"]):
        prefix = f"transformer.encoder.layers.{layer}."
        weights |= {
            prefix + "input_layernorm.weight": rand(h, scale=0.1, base=1.0),
            prefix + "self_attention.query_key_value.weight": rand(qkv, h, scale=0.15),
            prefix + "self_attention.query_key_value.bias": rand(qkv, scale=0.1),
            prefix + "self_attention.dense.weight": rand(h, config["num_attention_heads"] * hn),
            prefix + "post_attention_layernorm.weight": rand(h, scale=0.1, base=1.0),
            prefix + "mlp.dense_h_to_4h.weight": rand(2 * config["ffn_hidden_size"], h),
            prefix + "mlp.dense_4h_to_h.weight": rand(h, config["ffn_hidden_size"]),
        }
    weights["transformer.encoder.final_layernorm.weight"] = rand(h, scale=0.1, base=1.0)
    weights["transformer.output_layer.weight"] = rand(config["padded_vocab_size"], h)
    return weights


def write_checkpoint(
    folder: Path, texts: list[str], shards: int = 2, seed: int = 0, **shape
) -> tuple[Path, dict, dict]:
    """A ChatGLM2 folder: config.json, .bin shards + index, tokenizer.model, tokenizer_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_sentencepiece(texts, folder / "tokenizer.model")
    pieces = spm.SentencePieceProcessor(model_file=str(tokenizer)).vocab_size()
    vocab = math.ceil((pieces + 5) / 64) * 64  # padded, as 65024 for 64794 ids
    config = chatglm2_config(vocab, **shape)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "name_or_path": "THUDM/chatglm2-6b",
                "remove_space": False,
                "do_lower_case": False,
                "tokenizer_class": "ChatGLMTokenizer",
                "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]},
            }
        )
    )
    weights = random_weights(config, seed)
    names = list(weights)
    weight_map = {}
    for number in range(shards):
        part = names[number::shards]
        shard = f"pytorch_model-{number + 1:05d}-of-{shards:05d}.bin"
        torch.save({name: weights[name] for name in part}, folder / shard)
        weight_map |= {name: shard for name in part}
    total = sum(t.numel() * t.element_size() for t in weights.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    return folder, config, weights


# --- the ChatGLM2 forward pass ---------------------------------------------------------------


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # modeling_chatglm.py's RMSNorm: scale in fp32 (promoted), weight applied, then back.
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return (weight * (x * torch.rsqrt(variance + eps))).to(x.dtype)


def rotary_table(positions: int, rot: int, dtype: torch.dtype) -> torch.Tensor:
    """[positions, rot/2, 2] cos/sin, computed in `dtype` as the remote code does (bf16 when the
    model is loaded in bf16: positions and angles then round, see README)."""
    theta = 1.0 / (10000 ** (torch.arange(0, rot, 2, dtype=dtype) / rot))
    angles = torch.outer(torch.arange(positions, dtype=dtype), theta).float()
    table = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    return table.to(dtype) if dtype in (torch.bfloat16, torch.float16) else table


def reference_logits(
    weights: dict,
    config: dict,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    rope_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """ChatGLM2's logits [b, s, vocab]; position_ids default to 0..s-1 (pads included), as the
    remote code's get_position_ids; the mask as its get_masks (pad rows see everything)."""
    batch, length = input_ids.shape
    heads, groups = config["num_attention_heads"], config["multi_query_group_num"]
    hn, eps = config["kv_channels"], config["layernorm_epsilon"]
    w = weights
    x = w["transformer.embedding.word_embeddings.weight"][input_ids]
    dtype = x.dtype
    if position_ids is None:
        position_ids = torch.arange(length).expand(batch, -1)
    rot = hn // 2
    table = rotary_table(int(position_ids.max()) + 1, rot, rope_dtype or dtype)[position_ids]
    table = table[:, :, None]  # [b, s, 1, rot/2, 2]

    def rotate(t: torch.Tensor) -> torch.Tensor:
        pairs, rest = t[..., :rot].reshape(*t.shape[:3], rot // 2, 2), t[..., rot:]
        cos, sin = table[..., 0], table[..., 1]
        out = torch.stack(
            [
                pairs[..., 0] * cos - pairs[..., 1] * sin,
                pairs[..., 1] * cos + pairs[..., 0] * sin,
            ],
            dim=-1,
        )
        return torch.cat([out.flatten(3).to(t.dtype), rest], dim=-1)

    allowed = torch.ones(batch, length, length).tril()
    if attention_mask is not None:
        pad = attention_mask.float()
        allowed = allowed * pad[:, None, :]
        allowed -= pad[:, :, None] - 1  # remote code: a pad row sees everything (no NaN)
    blocked = (allowed < 0.5)[:, None]  # [b, 1, s, s]

    for layer in range(config["num_layers"]):
        p = f"transformer.encoder.layers.{layer}."
        h = _rms_norm(x, w[p + "input_layernorm.weight"], eps)
        qkv = h @ w[p + "self_attention.query_key_value.weight"].T
        qkv = qkv + w[p + "self_attention.query_key_value.bias"]
        q, k, v = qkv.split([heads * hn, groups * hn, groups * hn], dim=-1)
        q = rotate(q.view(batch, length, heads, hn))
        k = rotate(k.view(batch, length, groups, hn))
        v = v.view(batch, length, groups, hn)
        # multi-query: each group serves heads // groups consecutive heads
        k = k.repeat_interleave(heads // groups, dim=2)
        v = v.repeat_interleave(heads // groups, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads, s, hn]
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(hn)
        probs = scores.masked_fill(blocked, float("-inf")).softmax(-1).to(v.dtype)
        context = (probs @ v).transpose(1, 2).reshape(batch, length, heads * hn)
        x = x + context @ w[p + "self_attention.dense.weight"].T
        h = _rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = (h @ w[p + "mlp.dense_h_to_4h.weight"].T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.dense_4h_to_h.weight"].T
    x = _rms_norm(x, w["transformer.encoder.final_layernorm.weight"], eps)
    return x @ w["transformer.output_layer.weight"].T
