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

from emoscale.data.encoding import parse_json
from emoscale.errors import ConfigError, DataError, reason

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
EMBEDDINGS = ("embed_tokens.weight", "word_embeddings.weight", "wte.weight")


def _json(path: Path, key: str) -> object:
    """A model folder's JSON file, as strict as a run's own (data/encoding.parse_json): a key
    written twice (json kept the last without a word) or a NaN is one line naming the file.
    +-Infinity is taken: transformers writes it (Mamba2, Bamba, FalconH1: time_step_limit)."""
    try:
        return parse_json(path.read_text(encoding="utf-8"), path, infinity=True)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = (
            f"line {error.lineno} column {error.colno}: {error.msg}"
            if isinstance(error, json.JSONDecodeError)
            else "not UTF-8"
        )
        raise ConfigError(f"config key {key!r}: {path} is not valid JSON ({where})") from None
    except DataError as error:
        raise ConfigError(f"config key {key!r}: {error}") from None


def read_config_json(folder: str | Path, key: str) -> dict:
    """A model folder's config.json as a dict, for every reader of it (the checks, estimate, the
    encoders' sizes, the base-model fingerprint): one strict reader, one line for a damaged file."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConfigError(
            f"config key {key!r}: {folder} has no config.json (not a Hugging Face model folder)"
        )
    config = _json(path, key)
    if not isinstance(config, dict):
        raise ConfigError(f"config key {key!r}: {path} is not a JSON object")
    return config


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


def check_config_values(folder: str | Path, key: str) -> None:
    """config.json's values as transformers' config class of a known model_type takes them (a
    hidden_size written as text failed with a traceback in the speech encoder, and estimate
    blamed the tokenizer). A model_type transformers does not know, or a folder with its own
    config class (`auto_map.AutoConfig`, read with trust_remote_code: Phi-3's "su" rope scaling
    fails transformers' own class), is left to base_model.check_code and the folder's own code."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = read_config_json(folder, key)
    auto_map = config.get("auto_map")
    own_class = isinstance(auto_map, dict) and "AutoConfig" in auto_map
    if config.get("model_type") in CONFIG_MAPPING and not own_class:
        read_config(folder, trust_remote_code=False, key=key)


def check(folder: Path, key: str = "model.path", tokenizer: bool = True) -> None:
    config = read_config_json(folder, key)
    check_config_values(folder, key)
    present = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    if not present and not shards:
        raise ConfigError(
            f"config key {key!r}: {folder} has no weights ({' or '.join(WEIGHT_FILES[::2])})"
        )
    # transformers reads safetensors first: .bin files beside them (a Git LFS pointer left by a
    # clone that pulled only *.safetensors) are never read, so they are not checked either.
    safetensors = shards or any(name.startswith("model.safetensors") for name in present)
    for name in present:
        if name.endswith(".bin") and not safetensors:
            check_torch_file(folder / name, key)
    headers = {}
    for path in [folder / name for name in present if name.endswith(".safetensors")] + shards:
        headers[path.name] = safetensors_header(path, key)
    indexes = ["model.safetensors.index.json"] + (
        [] if safetensors else ["pytorch_model.bin.index.json"]
    )
    for index in indexes:
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
    """Every token id that ordinary text or emoscale's prompts produce must index the model's
    embeddings: a tokenizer with more tokens than config.json's vocab_size (added words, another
    model's tokenizer) failed at the first batch holding one, with an IndexError deep in torch.
    Added *special* tokens that no prompt uses are left alone: released tokenizers ship some past
    the embeddings (Gemma 3's image token), and those models train."""
    vocab_size = getattr(hf_config.get_text_config(), "vocab_size", None)
    if not isinstance(vocab_size, int):
        return
    words = [i for i, token in tokenizer.added_tokens_decoder.items() if not token.special]
    used = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    used += [tokenizer.unk_token_id]
    highest = max([tokenizer.vocab_size - 1, *words, *(i for i in used if i is not None)])
    if highest >= vocab_size:
        raise ConfigError(
            f"config key {key!r}: the tokenizer of {folder} produces token ids up to {highest} "
            f"({tokenizer.convert_ids_to_tokens(highest)!r}) but the model's embeddings hold "
            f"{vocab_size} (config.json vocab_size): use the model's own tokenizer"
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
