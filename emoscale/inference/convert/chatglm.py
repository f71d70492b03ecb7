"""ChatGLM2-6B / ChatGLM3-6B (remote code, model_type `chatglm`) -> transformers' `GlmForCausalLM`.

    emoscale convert chatglm models/chatglm2-6b-download --out models/chatglm2-6b

ChatGLM2/3 are the architecture of transformers' native GLM (issue 13): RMSNorm, SwiGLU, multi-query
attention with `multi_query_group_num` key/value groups, bias on q/k/v only, and rotary embeddings on
the first half of each head with interleaved pairs (`partial_rotary_factor` 0.5). So the weights map
one to one, except the fused `query_key_value`, which splits by rows into q (heads x head_dim), k and
v (groups x head_dim each). The tokenizer becomes a fast tokenizer that encodes as the folder's
SentencePiece model with the `[gMASK]` `<sop>` prefix (sentencepiece_bpe.py). The folder's own Python
code is never imported; the result loads with `AutoModelForCausalLM` and no remote code.

What cannot be mapped exactly is refused, in one line naming the key, before any weight is read.
The folder is written beside DST and renamed at the end, so a refusal or failure leaves nothing
(output_folder.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers.processors import TemplateProcessing
from transformers import GenerationConfig, GlmConfig, PreTrainedTokenizerFast

from emoscale.errors import EmoscaleError, reason
from emoscale.inference.convert.sentencepiece_bpe import fast_tokenizer
from emoscale.output_folder import new_folder, overlap_with_inputs, refuse_existing

# The values that make the remote code the GLM architecture (ChatGLM2-6B's and ChatGLM3-6B's).
REQUIRED = {
    "rmsnorm": True,
    "post_layer_norm": True,
    "add_bias_linear": False,
    "apply_residual_connection_post_layernorm": False,
    "fp32_residual_connection": False,
    "multi_query_attention": True,
    "original_rope": True,
}
SHAPE_KEYS = (
    "hidden_size",
    "num_layers",
    "num_attention_heads",
    "multi_query_group_num",
    "kv_channels",
    "ffn_hidden_size",
    "padded_vocab_size",
)
# tokenization_chatglm.py's special tokens, in id order after the SentencePiece pieces. ChatGLM2's
# `sop`/`eop` are renamed: as plain names they would also be pieces inside words ("people" ->
# "▁p", "eop", "▁le") wherever a tokenizer matches them in text.
CHATGLM2_SPECIAL = ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]
CHATGLM3_ROLES = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]

LAYER = "transformer.encoder.layers."
RENAMES = {  # everything else is `transformer.encoder.layers.N.self_attention.query_key_value.*`
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
LAYER_RENAMES = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",  # [gate; up], as GlmMLP chunks it
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
DROPPED = ".rotary_pos_emb.inv_freq"  # recomputed by transformers (in fp32, see README)


# --- reading and checking the source folder --------------------------------------------------


def _read_json(path: Path) -> object:
    """A JSON file's content; a damaged one (a cut download, an HTML error page) is one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EmoscaleError(f"convert chatglm: {path}: not UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        raise EmoscaleError(
            f"convert chatglm: {path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})"
        ) from None


def read_config(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise EmoscaleError(f"convert chatglm: {src} has no config.json")
    config = _read_json(path)
    if not isinstance(config, dict):
        raise EmoscaleError(
            f"convert chatglm: {path}: expected a JSON object, got {type(config).__name__}"
        )
    if config.get("model_type") != "chatglm":
        raise EmoscaleError(
            f"convert chatglm: {path}: model_type is {config.get('model_type')!r}, expected 'chatglm'"
        )
    return config


def check_config(config: dict, path: Path) -> None:
    """Refuse every setting whose weights or maths GlmForCausalLM would not reproduce exactly."""
    where = f"convert chatglm: {path}:"
    if config.get("quantization_bit"):
        raise EmoscaleError(
            f"{where} quantization_bit is {config['quantization_bit']}: a quantized checkpoint; "
            "convert the full-precision one (load_in_8bit/4bit quantizes after conversion)"
        )
    if config.get("pre_seq_len") is not None:
        raise EmoscaleError(
            f"{where} pre_seq_len is {config['pre_seq_len']}: a P-Tuning v2 prefix encoder is "
            "not part of GLM; convert the base model and train ptuning_v2 in emoscale"
        )
    if config.get("rope_ratio", 1) != 1:
        raise EmoscaleError(
            f"{where} rope_ratio is {config['rope_ratio']}: it divides the positions in "
            "ChatGLM2-6B-32k but multiplies the rotary base in ChatGLM3-6B-32k; only the "
            "6B models without it are converted"
        )
    for key, value in REQUIRED.items():
        if key in config and config[key] != value:
            raise EmoscaleError(
                f"{where} {key} is {config[key]!r}, expected {value!r} (ChatGLM2's)"
            )
    for key in SHAPE_KEYS:
        if not isinstance(config.get(key), int):
            raise EmoscaleError(f"{where} {key} is missing or not a whole number")
    if config["num_attention_heads"] % config["multi_query_group_num"]:
        raise EmoscaleError(
            f"{where} num_attention_heads ({config['num_attention_heads']}) is not a multiple of "
            f"multi_query_group_num ({config['multi_query_group_num']})"
        )


def read_weight_map(index: Path) -> dict[str, str]:
    """An index's `weight_map`, weight name -> shard file name, both strings."""
    content = _read_json(index)
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise EmoscaleError(
            f"convert chatglm: {index}: no weight_map (expected an object of weight name -> shard file)"
        )
    for key, name in weight_map.items():
        if not isinstance(name, str) or not name:
            raise EmoscaleError(
                f"convert chatglm: {index}: weight {key}: shard {json.dumps(name)}, expected a file name"
            )
    return weight_map


def weight_files(src: Path) -> list[Path]:
    """The checkpoint's weight files, all present (checked before any is read)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = src / index_name
        if index.is_file():
            weight_map = read_weight_map(index)
            for key in weight_map:
                check_key(key, index)
            files = sorted(set(weight_map.values()))
            missing = [name for name in files if not (src / name).is_file()]
            if missing:
                raise EmoscaleError(
                    f"convert chatglm: {index}: shard {missing[0]} is missing "
                    f"({len(missing)} of {len(files)} missing; download every shard)"
                )
            return [src / name for name in files]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (src / single).is_file():
            return [src / single]
    raise EmoscaleError(
        f"convert chatglm: {src} has no weights (pytorch_model-*.bin with "
        "pytorch_model.bin.index.json, pytorch_model.bin, or safetensors)"
    )


def check_key(key: str, source: Path) -> None:
    if "prefix_encoder" in key:
        raise EmoscaleError(
            f"convert chatglm: {source}: weight {key}: a P-Tuning v2 prefix encoder is not "
            "part of GLM; convert the base model and train ptuning_v2 in emoscale"
        )
    if key.endswith("weight_scale"):
        raise EmoscaleError(f"convert chatglm: {source}: weight {key}: a quantized checkpoint")


def is_chatglm3(src: Path) -> bool:
    """ChatGLM3's tokenizer adds four role tokens after ChatGLM2's five; read (never imported)
    from the folder's tokenization code."""
    code = src / "tokenization_chatglm.py"
    return code.is_file() and "<|observation|>" in code.read_text(errors="replace")


# --- converting ------------------------------------------------------------------------------


def glm_config(config: dict) -> GlmConfig:
    heads, groups = config["num_attention_heads"], config["multi_query_group_num"]
    return GlmConfig(
        vocab_size=config["padded_vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["ffn_hidden_size"],
        num_hidden_layers=config["num_layers"],
        num_attention_heads=heads,
        num_key_value_heads=groups,
        head_dim=config["kv_channels"],
        # remote code: rotary on kv_channels // 2 dims of each head, base 10000 (no rope_ratio)
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5,
        },
        rms_norm_eps=config.get("layernorm_epsilon", 1e-5),
        attention_bias=bool(config.get("add_qkv_bias", False)),
        attention_dropout=config.get("attention_dropout", 0.0),
        max_position_embeddings=config.get("seq_length", 32768),
        hidden_act="silu",
        tie_word_embeddings=False,
        pad_token_id=0,  # tokenization_chatglm.py pads with <unk>
        eos_token_id=config.get("eos_token_id", 2),
        bos_token_id=None,
        dtype=config.get("torch_dtype", "float16"),
    )


def convert_tensors(tensors: dict[str, torch.Tensor], config: dict, source: Path) -> dict:
    """One shard's tensors under GLM's names; the fused query_key_value split by rows."""
    head_dim = config["kv_channels"]
    q_rows = config["num_attention_heads"] * head_dim
    kv_rows = config["multi_query_group_num"] * head_dim
    out = {}
    for key, tensor in tensors.items():
        check_key(key, source)
        if key.endswith(DROPPED):
            continue
        if key in RENAMES:
            out[RENAMES[key]] = tensor.contiguous()
            continue
        number, _, rest = key.removeprefix(LAYER).partition(".")
        if not key.startswith(LAYER) or not number.isdigit():
            raise EmoscaleError(f"convert chatglm: {source}: unknown weight {key}")
        prefix = f"model.layers.{number}."
        if rest in LAYER_RENAMES:
            out[prefix + LAYER_RENAMES[rest]] = tensor.contiguous()
        elif rest in (
            "self_attention.query_key_value.weight",
            "self_attention.query_key_value.bias",
        ):
            if tensor.shape[0] != q_rows + 2 * kv_rows:
                raise EmoscaleError(
                    f"convert chatglm: {source}: {key} has {tensor.shape[0]} rows, expected "
                    f"{q_rows + 2 * kv_rows} (heads and groups x kv_channels from config.json)"
                )
            kind = rest.rsplit(".", 1)[1]
            q, k, v = tensor.split([q_rows, kv_rows, kv_rows], dim=0)
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}self_attn.{name}.{kind}"] = part.contiguous()
        else:
            raise EmoscaleError(f"convert chatglm: {source}: unknown weight {key}")
    return out


def _load(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size < 1024 and path.read_bytes().startswith(b"version https://git-lfs"):
        raise EmoscaleError(
            f"convert chatglm: {path} is a git-lfs pointer, not weights (run `git lfs pull`)"
        )
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # weights_only: a pickle could run code; mmap: the shard is paged in, not copied.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch/safetensors raise several types for a damaged file
        raise EmoscaleError(
            f"convert chatglm: {path}: unreadable weights ({reason(error)})"
        ) from None


def expected_keys(config: dict) -> set[str]:
    keys = set(RENAMES.values())
    attention = ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"]
    if config.get("add_qkv_bias"):
        attention += ["q_proj.bias", "k_proj.bias", "v_proj.bias"]
    per_layer = [f"self_attn.{name}" for name in attention] + [
        LAYER_RENAMES[name] for name in LAYER_RENAMES if not name.startswith("self_attention")
    ]
    for layer in range(config["num_layers"]):
        keys.update(f"model.layers.{layer}.{name}" for name in per_layer)
    return keys


def write_weights(files: list[Path], config: dict, folder: Path) -> None:
    """One safetensors shard per source shard, and the index transformers reads."""
    weight_map, total, written = {}, 0, set()
    for number, path in enumerate(files, start=1):
        tensors = convert_tensors(_load(path), config, path)
        name = f"model-{number:05d}-of-{len(files):05d}.safetensors"
        save_file(tensors, folder / name, metadata={"format": "pt"})
        for key, tensor in tensors.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
        written.update(tensors)
        del tensors
    missing = sorted(expected_keys(config) - written)
    if missing:
        raise EmoscaleError(
            f"convert chatglm: {files[0].parent}: weight for {missing[0]} is missing"
        )
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_tokenizer(src: Path, folder: Path, chatglm3: bool) -> None:
    special = CHATGLM2_SPECIAL + (CHATGLM3_ROLES if chatglm3 else [])
    backend = fast_tokenizer(src / "tokenizer.model", special)
    prefix = [(token, backend.token_to_id(token)) for token in ("[gMASK]", "<sop>", "</s>")]
    backend.post_processor = TemplateProcessing(
        single="[gMASK] <sop> $A", pair="[gMASK] <sop> $A $B:1 </s>:1", special_tokens=prefix
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<unk>",  # id 0, as tokenization_chatglm.py pads
        eos_token="</s>",
        padding_side="left",
        split_special_tokens=True,  # literal "[gMASK]" or "</s>" in a text stays text
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(folder)


def convert(src: str | Path, dst: str | Path) -> Path:
    """Convert the ChatGLM2/3 folder `src` into a GlmForCausalLM folder `dst` (must not hold files)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise EmoscaleError(f"convert chatglm: source folder {src} does not exist")
    inside = overlap_with_inputs(dst, {"source": str(src)}, contains=False)
    if inside is not None:  # the download is an input: nothing is written into it
        raise EmoscaleError(
            f"convert chatglm: --out {dst} {inside[0]} the source folder {src}; write it apart"
        )
    refuse_existing(dst, "convert chatglm: --out")  # before any file is read
    config = read_config(src)
    check_config(config, src / "config.json")
    files = weight_files(src)
    if not (src / "tokenizer.model").is_file():
        raise EmoscaleError(f"convert chatglm: {src} has no tokenizer.model (SentencePiece)")
    with new_folder(dst, "convert chatglm: --out") as work:
        write_tokenizer(src, work, is_chatglm3(src))
        write_weights(files, config, work)
        glm_config(config).save_pretrained(work)
        GenerationConfig(
            eos_token_id=config.get("eos_token_id", 2), pad_token_id=0
        ).save_pretrained(work)
        (work / "emoscale_convert.json").write_text(
            json.dumps({"source": str(src.resolve()), "from": "chatglm", "to": "glm"}, indent=2)
        )
    return dst
