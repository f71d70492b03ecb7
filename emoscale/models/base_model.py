"""Which base model a run was trained on, and the check that refuses another one; and the check
that a model folder needing its own code is refused unless model.trust_remote_code is on.

An adapter (LoRA, prefixes) and a checkpoint of trainable tensors mean something only on the base
weights they were trained with. run.json records the base model's fingerprint: its config.json
shape fields and a digest of its safetensors headers plus the first MiB of data (cheap for a 6B
model, and different for two fine-tunes of one architecture). `check` compares a model folder
with it before predict, eval or a resume loads anything heavy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from emoscale.data.encoding import read_json
from emoscale.errors import DataError, EmoscaleError
from emoscale.models.model_folder import read_config_json

FIELDS = (
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)


def weights_digest(folder: Path) -> str | None:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            digest.update(handle.read(header_size))  # tensor names, dtypes, shapes
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def fingerprint(folder: str | Path, key: str = "model.path") -> dict:
    """`key`: the config key that names the folder, for a damaged config.json's message (a
    fusion run's base is its speech encoder, model.audio_path)."""
    folder = Path(folder)
    config = read_config_json(folder, key)
    found = {key: config[key] for key in FIELDS if key in config}
    return found | {"weights": weights_digest(folder)}


def _recorded(run_dir: Path) -> tuple[dict | None, str]:
    """The fingerprint of the run's base: run.json's, else that of the folder PEFT's
    adapter_config.json names (runs from before run.json recorded it)."""
    run_json = run_dir / "run.json"
    if run_json.is_file():
        record = read_json(run_json, finite=False)  # one line for a damaged or hand-written file
        if not isinstance(record, dict):
            raise DataError(f"{run_json}: expected a JSON object")
        recorded = record.get("base_model")
        if recorded:
            return recorded["fingerprint"], recorded["path"]
    adapter_config = run_dir / "model" / "adapter_config.json"
    if adapter_config.is_file():
        adapter = read_json(adapter_config)
        path = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
        if path and (Path(path) / "config.json").is_file():
            return fingerprint(path, "base_model_name_or_path in " + str(adapter_config)), path
    return None, ""


def check(run_dir: str | Path, model_path: str | Path) -> None:
    """Raise a one-line EmoscaleError when `model_path` is not the base model of the run."""
    run_dir, model_path = Path(run_dir), Path(model_path)
    expected, expected_path = _recorded(run_dir)
    if expected is None:
        return  # nothing recorded to compare with
    actual = fingerprint(model_path)
    for key, value in expected.items():
        if value is not None and actual.get(key) != value:
            what = (
                "its weights differ"
                if key == "weights"
                else f"{key} {actual.get(key)!r}, the run's base has {value!r}"
            )
            raise EmoscaleError(
                f"model folder {model_path} is not the base model of run {run_dir} "
                f"({what}; the run was trained on {expected_path})"
            )


def check_code(folder: str | Path, trust_remote_code: bool) -> None:
    """A folder whose model_type transformers does not know can only load by running the Python
    files it ships (config.json's auto_map). Refuse that, in one line, unless the config allows it.
    (A known model_type loads with transformers' own classes; auto_map is then ignored.)"""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = read_config_json(folder, "model.path")
    model_type = config.get("model_type")
    if trust_remote_code or model_type in CONFIG_MAPPING:
        return
    code = sorted(set(config.get("auto_map", {}).values()))
    raise EmoscaleError(
        f"config key 'model.trust_remote_code': {folder} has model_type {model_type!r}, which "
        f"transformers does not know; loading it would run the folder's own code {code}. "
        "Set model.trust_remote_code=true only if you trust that code"
    )
