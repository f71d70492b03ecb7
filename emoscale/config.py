"""The run config: one typed, validated schema, loaded from YAML plus dotted `key=value` overrides.

Every key lives here with its default; unknown keys, wrong types and impossible values fail with one
line naming the key, before any model or data is loaded. Cross-key rules (which options cannot be
combined) live in `emoscale/rules.py`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emoscale.errors import ConfigError

METRICS = ("accuracy", "macro_f1", "weighted_f1", "ua", "wa")
Metric = Literal["accuracy", "macro_f1", "weighted_f1", "ua", "wa"]


class Section(BaseModel):
    # extra="forbid": a misspelt key is an error, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(Section):
    family: Literal["prompt_lm", "fusion"] = "prompt_lm"
    path: str | None = None  # a local Hugging Face model folder; nothing is downloaded
    # family fusion (models/speech_text.py): a speech encoder and a text encoder, local folders
    audio_path: str | None = None  # WavLM / HuBERT / wav2vec2 folder with its feature extractor
    text_path: str | None = None  # a text encoder folder (RoBERTa-base in LoRA-MER), always frozen
    # lora: LoRA on the speech encoder's q/v (fusion.lora_*); frozen; full: every encoder weight
    # trains (a speech encoder trained from scratch or fully fine-tuned)
    audio_method: Literal["lora", "frozen", "full"] = "lora"
    audio_layers: Literal["last", "weighted"] = (
        "last"  # weighted: learned softmax mix of all layers
    )
    modalities: Literal["audio", "text", "both"] = "both"
    # none: zero-shot; ptuning_v2: deep prefix tuning (P-Tuning v2); p_tuning: prompt encoder
    method: Literal["none", "lora", "full", "ptuning_v2", "prompt_tuning", "p_tuning"] = "lora"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights as loaded
    trust_remote_code: bool = False
    # Memory-constrained mode (bitsandbytes): LLM.int8 or NF4 weights, adapters trained on top.
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    # None: uint8. ZeRO-3 can shard 4-bit weights only when this equals the other weights' dtype.
    bnb_4bit_quant_storage: Literal["uint8", "float32", "bfloat16", "float16"] | None = None


class LoraConfig(Section):
    r: int = Field(8, ge=1)  # rank 8, as in the LLM paper
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = (
        None  # None: PEFT's choice for the architecture (q/v projections)
    )
    use_dora: bool = False  # weight-decomposed LoRA (DoRA)


class PTuningConfig(Section):
    """Virtual-token methods: ptuning_v2 (prefix in every layer), prompt_tuning, p_tuning."""

    num_virtual_tokens: int = Field(32, ge=1)  # the LLM paper's prefix length
    prefix_projection: bool = False  # ptuning_v2: reparameterise the prefix through an MLP
    encoder_hidden_size: int = Field(512, ge=1)  # that MLP's (or p_tuning's encoder's) hidden size


class DataConfig(Section):
    dataset: str = "csv"  # a name in emoscale.data.CORPORA
    path: str | None = None  # the corpus folder in its official layout
    text_column: str = "text"  # generic CSV/TSV/JSONL only
    label_column: str = "label"
    id_column: str | None = None
    labels: list[str] | None = None  # generic corpora: the label set (else taken from train)
    target: str | None = (
        None  # which labelling: meld emotion|sentiment, mosi 2class|..., None: the corpus'
    )
    fold: int | None = Field(None, ge=0)  # re-split for cross-validation fold i (data/folds.py)
    num_folds: int | None = Field(None, ge=2)  # None: the corpus' protocol (IEMOCAP 5 sessions ...)
    max_length: int = Field(
        256, ge=8
    )  # prompt (fusion: text-encoder) tokens; longer texts truncated, counted
    group_by_length: bool = True  # batches of similar length: less padding
    max_seconds: float = Field(
        8.0, gt=0.0
    )  # audio: longer clips cropped (random in training, centred in eval)
    skip_bad_audio: bool = (
        False  # missing/empty/unreadable audio: skip and count instead of stopping
    )


class PromptConfig(Section):
    template: str | None = None  # None: the corpus' default; must contain {text}, may use {labels}
    labels: list[str] | None = None  # label words the model reads and answers; None: the corpus'
    length_normalize: bool = False  # score mode: mean instead of sum of answer-token log-probs
    context_turns: int = Field(
        0, ge=0
    )  # earlier turns of the dialogue shown; 0 reproduces the papers
    context_max_tokens: int | None = Field(
        None, ge=1
    )  # context trimmed oldest-first to this; None: no cap


class FusionConfig(Section):
    """LoRA-MER (models/speech_text.py); the paper's recipe: recipes/iemocap_fusion_lora_wavlm.yaml."""

    dim: int = Field(256, ge=1)  # D: Conv1D channels and f_a, f_t size (paper eq. 1)
    classifier_hidden: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # lambda in L = L_ce + lambda * (-I) (eq. 13). None: 0.25 with both modalities, 0 with one.
    mine_weight: float | None = Field(None, ge=0.0)
    mine_hidden: int = Field(256, ge=1)  # statistics network T(x, z) width
    mine_ema_decay: float | None = Field(
        0.99, gt=0.0, lt=1.0
    )  # moving-average gradient correction; None: off
    lora_r: int = Field(
        2, ge=1
    )  # speech-encoder LoRA: r=2 on q/v gives 73,728 parameters on a base model
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lora_target_modules: list[str] = ["q_proj", "v_proj"]
    text_cache_dir: str | None = None  # None: $EMOSCALE_CACHE/text_features (~/.cache/emoscale)


class TrainConfig(Section):
    batch_size: int = Field(16, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; overrides epochs when set
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    # None: whatever `accelerate launch` says (accelerate config / --mixed_precision); a value here wins.
    mixed_precision: Literal["no", "bf16", "fp16"] | None = None
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    early_stopping_patience: int | None = Field(None, ge=1)  # evaluations without dev improvement
    save_every_steps: int | None = Field(None, ge=1)  # also saved at every evaluation
    keep_checkpoints: int = Field(2, ge=1)  # newest N kept, plus the best
    log_every_steps: int = Field(10, ge=1)
    num_workers: int = Field(0, ge=0)
    # Recompute activations in backward: less memory, about a third more time.
    gradient_checkpointing: bool = False
    # A batch whose loss is nan/inf: false stops the run naming the step and examples; true skips
    # the batch (no gradient from it) and counts it in run.json.
    skip_nonfinite: bool = False


class EvalConfig(Section):
    every_steps: int | None = Field(None, ge=1)  # None: at the end of each epoch only
    metric: Metric = (
        "macro_f1"  # dev metric that picks the best checkpoint and drives early stopping
    )
    mode: Literal["score", "generate"] = "score"
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(8, ge=1)  # generate mode
    # generate mode under ZeRO-3: every rank must keep stepping until all finish (None: automatic)
    synced_gpus: bool | None = None


class RunConfig(Section):
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    ptuning: PTuningConfig = PTuningConfig()
    data: DataConfig = DataConfig()
    prompt: PromptConfig = PromptConfig()
    fusion: FusionConfig = FusionConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 42
    output_dir: str | None = None  # None: runs/<dataset>-<method>-<time>

    @property
    def method_label(self) -> str:
        """The method as the papers' tables name it: 'lora', 'ptuning_v2', ... or for the fusion
        family its modalities and speech-encoder treatment, e.g. 'both-lora', 'audio-frozen'."""
        if self.model.family == "fusion":
            return f"{self.model.modalities}-{self.model.audio_method}"
        return self.model.method


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _known_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, _known_keys(RunConfig), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown config key {key!r}{_closest(key)}"
    given = first.get("input")
    return f"config key {key!r}: {first['msg']} (got {given!r})"


class ConfigLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans, true and false only. PyYAML follows YAML 1.1, which reads
    yes/no/on/off as booleans: `mixed_precision: no` or label words [yes, no] would turn False."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [entry for entry in entries if entry[0] != "tag:yaml.org,2002:bool"]
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader)


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it: `3e-4` is a float, `[q_proj,v_proj]` a list."""
    value = read_yaml(text) if text != "" else ""
    return text if value is None and text.lower() not in ("null", "none", "~") else value


def apply_override(raw: dict, dotted_key: str, value: Any) -> None:
    parts = dotted_key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {dotted_key!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None
) -> RunConfig:
    """Build the run config from an optional YAML file (or `base` dict) and `key=value` overrides."""
    raw: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(
                f"config file {path} is not valid YAML: {str(error).splitlines()[0]}"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {path}: expected a mapping of sections, got {type(loaded).__name__}"
            )
        raw = _merge(raw, loaded)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
        apply_override(raw, key.strip(), parse_value(text))
    return validate(raw)


def validate(raw: dict) -> RunConfig:
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None
    from emoscale.rules import check_rules  # cross-key rules, in one place

    check_rules(config)
    return config


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
