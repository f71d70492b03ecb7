"""A Hugging Face model folder checked without loading it (issue 12): a corrupt config.json, no
weights, an empty / truncated / random safetensors file, embeddings whose shape does not match
config.json, a missing or corrupt tokenizer. Each is one line naming the file, before any weights
load; transformers would fail later with a traceback (or blame sentencepiece). Used through
adapters.check_model_folder by train, predict, export and estimate."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from emoscale.errors import ConfigError

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


def safetensors_header(path: Path, key: str) -> dict:
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
    if problem:
        raise ConfigError(f"config key {key!r}: {path} {problem}")
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
    for name in ("tokenizer_config.json", "tokenizer.json"):
        if (folder / name).is_file():
            _json(folder / name, key)
    if tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(
            f"config key {key!r}: {folder} has no tokenizer ({', '.join(TOKENIZER_FILES)})"
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
