"""A Hugging Face model folder checked without loading it (issue 12): a corrupt config.json, no
weights, an empty / truncated / random safetensors file, embeddings whose shape does not match
config.json, a missing or corrupt tokenizer. Each is one line naming the file, before any weights
load; transformers would fail later with a traceback (or blame sentencepiece). Used through
adapters.check_model_folder by train, predict, export and estimate."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from emoscale.errors import ConfigError, reason

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
EMBEDDINGS = ("embed_tokens.weight", "word_embeddings.weight", "wte.weight")


def _json(path: Path, key: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = (
            f"line {error.lineno} column {error.colno}: {error.msg}"
            if isinstance(error, json.JSONDecodeError)
            else "not UTF-8"
        )
        raise ConfigError(f"config key {key!r}: {path} is not valid JSON ({where})") from None


def safetensors_header(path: Path, key: str | None) -> dict:
    """The tensor table of a safetensors file, after checking the file holds every byte it names."""
    size = path.stat().st_size
    problem = None
    with path.open("rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None:
            problem = "is empty" if size == 0 else f"is truncated ({size} bytes)"
        elif length > size - 8:
            problem = "is not a safetensors file (its header length is impossible)"
        else:
            try:
                header = json.loads(handle.read(length))
                end = max(
                    (
                        entry["data_offsets"][1]
                        for name, entry in header.items()
                        if name != "__metadata__"
                    ),
                    default=0,
                )
            except (ValueError, KeyError, TypeError, IndexError):
                problem = "is not a safetensors file (its header is not a tensor table)"
            else:
                if size < 8 + length + end:
                    problem = f"is truncated ({size} bytes; its header names {8 + length + end})"
    if problem:  # key None: a run folder's own file, not a config key's folder
        raise ConfigError((f"config key {key!r}: " if key else "") + f"{path} {problem}")
    return header


def check(folder: Path, key: str = "model.path", tokenizer: bool = True) -> None:
    config = _json(folder / "config.json", key)
    if not isinstance(config, dict):
        raise ConfigError(f"config key {key!r}: {folder / 'config.json'} is not a JSON object")
    present = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    if not present and not shards:
        raise ConfigError(
            f"config key {key!r}: {folder} has no weights ({' or '.join(WEIGHT_FILES[::2])})"
        )
    for name in present:
        if name.endswith(".bin"):
            check_torch_file(folder / name, key)
    headers = {}
    for path in [folder / name for name in present if name.endswith(".safetensors")] + shards:
        headers[path.name] = safetensors_header(path, key)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index in present:
            _check_shard_index(folder / index, key, headers)
    for path in [folder / name for name in headers]:
        for name, entry in headers[path.name].items():
            expected = [config.get("vocab_size"), config.get("hidden_size")]
            if name.endswith(EMBEDDINGS) and None not in expected and entry["shape"] != expected:
                raise ConfigError(
                    f"config key {key!r}: {path} holds {name} of shape {entry['shape']}, "
                    f"but config.json says vocab_size x hidden_size = {expected}"
                )
    for name in ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"):
        # Each is a JSON object (transformers calls .get/.pop on it and fails with a traceback).
        if (folder / name).is_file() and not isinstance(_json(folder / name, key), dict):
            raise ConfigError(f"config key {key!r}: {folder / name} is not a JSON object")
    if tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(
            f"config key {key!r}: {folder} has no tokenizer ({', '.join(TOKENIZER_FILES)})"
        )


def check_torch_file(path: Path, key: str) -> None:
    """A `pytorch_model*.bin` must be what torch.save writes: a zip archive with its directory
    (a truncated one has none), or a legacy pickle stream; else torch.load fails mid-load."""
    with path.open("rb") as handle:
        start = handle.read(2)
    if zipfile.is_zipfile(path) or (len(start) == 2 and start[0] == 0x80):
        return
    problem = "is empty" if not start else "is truncated or not a PyTorch weights file"
    raise ConfigError(f"config key {key!r}: {path} {problem} (neither a zip archive nor a pickle)")


def read_config(folder: str | Path, trust_remote_code: bool, key: str = "model.path"):
    """transformers' own config object, or one line: config.json values its config class refuses
    (num_attention_heads 0, a hidden_size the heads do not divide) failed with a traceback."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as error:  # noqa: BLE001 (config classes raise ValueError, ZeroDivisionError, ...)
        problem = f"{type(error).__name__}: {reason(error)}"
        raise ConfigError(
            f"config key {key!r}: transformers cannot read {Path(folder) / 'config.json'} ({problem})"
        ) from None


def check_vocabulary(folder: str | Path, tokenizer, hf_config, key: str = "model.path") -> None:
    """Every token id the tokenizer can produce must index the model's embeddings: a tokenizer
    with more tokens than config.json's vocab_size (added tokens, another model's tokenizer)
    failed at the first batch holding one, with an IndexError deep in torch."""
    vocab_size = getattr(hf_config.get_text_config(), "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ConfigError(
            f"config key {key!r}: the tokenizer of {folder} has {len(tokenizer)} tokens but the "
            f"model's embeddings hold {vocab_size} (config.json vocab_size); ids {vocab_size} and "
            "up would index past them: use the model's own tokenizer"
        )


def _check_shard_index(index: Path, key: str, headers: dict[str, dict]) -> None:
    """A sharded checkpoint's index: valid JSON whose weight_map names shards that exist in the
    folder (safetensors shards: each holding the tensors the index places in it). transformers
    would otherwise fail mid-load with a traceback, or load a model with missing weights."""
    weight_map = _json(index, key)
    weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConfigError(f"config key {key!r}: {index} has no weight_map (tensor -> shard file)")
    for tensor, shard in weight_map.items():
        path = index.parent / str(shard)
        if not path.is_file():
            raise ConfigError(f"config key {key!r}: {index} names shard {shard}, which is missing")
        if shard.endswith(".safetensors"):
            if shard not in headers:
                headers[shard] = safetensors_header(path, key)
            if tensor not in headers[shard]:
                raise ConfigError(
                    f"config key {key!r}: {index} places {tensor} in {shard}, which does not hold it"
                )
