"""Which options cannot be combined: every rule is a named check with a one-line reason.

All of them run in `config.validate`, before any model or data is loaded (LLaMA-Factory's parser is
the model for this). Add a rule by writing a function and listing it in RULES.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from pathlib import Path

from emoscale.config.schema import RunConfig
from emoscale.data.encoding import read_json
from emoscale.errors import ConfigError, DataError


def _template_has_text(config: RunConfig) -> str | None:
    template = config.prompt.template
    if template is not None and "{text}" not in template:
        return "config key 'prompt.template': must contain {text} (and may contain {labels})"
    if template is not None:  # a stray brace or another placeholder would fail in str.format
        try:
            names = [
                name for _, name, _, _ in string.Formatter().parse(template) if name is not None
            ]
        except ValueError as error:
            return f"config key 'prompt.template': {error}; write a literal brace as {{{{ or }}}}"
        unknown = [name for name in names if name not in ("text", "labels")]
        if unknown:
            return (
                f"config key 'prompt.template': unknown placeholder {{{unknown[0]}}}; only {{text}} "
                "and {labels} are filled in (write a literal brace as {{ or }})"
            )
    return None


def _label_lists(config: RunConfig) -> str | None:
    """data.labels (the classes) and prompt.labels (their words): no empty, repeated or case-twin
    entries (two classes with one label word), and as many words as classes (issue 12)."""
    for key, labels in (
        ("data.labels", config.data.labels),
        ("prompt.labels", config.prompt.labels),
    ):
        # One word for two classes is the count check's (below, or once the corpus is read).
        if labels is not None and len(labels) < (2 if key == "data.labels" else 1):
            return (
                f"config key {key!r}: {len(labels)} labels; a classifier needs at least two "
                "(leave the key out for the corpus' own)"
            )
        seen: dict[str, str] = {}
        for label in labels or []:
            if not label.strip():
                return f"config key {key!r}: an empty label"
            earlier = seen.setdefault(label.strip().lower(), label)
            if earlier == label:
                if list(labels).count(label) > 1:
                    return f"config key {key!r}: {label!r} appears twice"
            else:
                return (
                    f"config key {key!r}: {earlier!r} and {label!r} differ only in case or spaces"
                )
    words, classes = config.prompt.labels, config.data.labels
    if words is not None and classes is not None and len(words) != len(classes):
        return (
            f"config key 'prompt.labels': {len(words)} label words for the {len(classes)} "
            f"labels of data.labels"
        )
    return None


def _known_dataset(config: RunConfig) -> str | None:
    from emoscale.data.registry import CORPORA

    if config.data.dataset not in CORPORA:
        return f"config key 'data.dataset': unknown dataset {config.data.dataset!r}; known: {', '.join(sorted(CORPORA))}"
    return None


def _fp16_needs_cuda(config: RunConfig) -> str | None:
    import torch

    if config.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        return "config key 'train.mixed_precision': fp16 needs a CUDA GPU; use bf16 or no on CPU"
    return None


def _fusion_model_keys(config: RunConfig) -> str | None:
    """Each family reads its own model keys; a key the chosen family ignores is a mistake."""
    model = config.model
    if model.family != "fusion":
        for key in ("audio_path", "text_path"):
            if getattr(model, key) is not None:
                return f"config key 'model.{key}': read by model.family=fusion only (family is {model.family!r})"
        return None
    if model.path is not None:
        return "config key 'model.path': model.family=fusion reads model.audio_path and model.text_path instead"
    if model.method != "lora":
        return "config key 'model.method': model.family=fusion sets the speech encoder with model.audio_method"
    if config.lora != type(config.lora)():
        return "config key 'lora': model.family=fusion sets the speech encoder's LoRA with fusion.lora_* instead"
    if model.modalities in ("audio", "both") and model.audio_path is None:
        return f"config key 'model.audio_path': required with model.modalities={model.modalities}"
    if model.modalities in ("text", "both") and model.text_path is None:
        return f"config key 'model.text_path': required with model.modalities={model.modalities}"
    return None


def _mine_needs_two_modalities(config: RunConfig) -> str | None:
    weight, modalities = config.fusion.mine_weight, config.model.modalities
    if config.model.family == "fusion" and weight and modalities != "both":
        return (
            f"config key 'fusion.mine_weight': MINE estimates the MI between the two modalities; "
            f"with model.modalities={modalities} set it to 0 or leave it unset"
        )
    return None


def _fusion_needs_pooling_layers(config: RunConfig) -> str | None:
    if config.model.family == "fusion" and config.model.modalities == "both":
        if not config.fusion.pooling_layers:
            return (
                "config key 'fusion.pooling_layers': false leaves f_a and f_t at their encoders' "
                "widths, which AT-Fusion cannot combine; with model.modalities=both keep it true"
            )
    return None


def _transcripts_feed_a_text_encoder(config: RunConfig) -> str | None:
    # data.transcripts replaces the text the fusion family's text encoder reads (issue 15)
    if config.data.transcripts is None:
        return None
    if config.model.family != "fusion" or config.model.modalities == "audio":
        return (
            "config key 'data.transcripts': read by model.family=fusion with model.modalities "
            "text or both only"
        )
    return None


def _train_on_dev_selects_nothing_on_dev(config: RunConfig) -> str | None:
    # dev trained on cannot pick a checkpoint or stop training early (issue 15)
    if not config.data.train_on_dev:
        return None
    if config.eval.select != "last":
        return (
            "config key 'data.train_on_dev': dev then trains, so it cannot pick the model; "
            "set eval.select=last"
        )
    if config.train.early_stopping_patience is not None:
        return (
            "config key 'data.train_on_dev': dev then trains, so it cannot stop training early; "
            "leave train.early_stopping_patience unset"
        )
    return None


PROMPT_LEARNING = ("ptuning_v2", "prompt_tuning", "p_tuning")


TRUE, FALSE = ("y", "yes", "t", "true", "on", "1"), ("n", "no", "f", "false", "off", "0")
# The variables `accelerate launch` sets (or a user exports) that emoscale or accelerate parse:
# a garbage value was accelerate's `invalid truth value` traceback, an int() traceback in the
# rules below, or (ACCELERATE_MIXED_PRECISION) silently ignored.
LAUNCHER_FLAGS = ("ACCELERATE_USE_CPU", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP",
                  "ACCELERATE_USE_MEGATRON_LM", "ACCELERATE_DEBUG_MODE")  # fmt: skip
LAUNCHER_COUNTS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
MIXED_PRECISION = ("no", "fp16", "bf16", "fp8")


def _launcher_environment(config: RunConfig) -> str | None:
    for name in LAUNCHER_FLAGS:
        value = os.environ.get(name)
        if value is not None and value.lower() not in TRUE + FALSE:
            return f"environment variable {name} is {value!r}; expected true or false"
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if precision is not None and precision.lower() not in MIXED_PRECISION:
        return (
            f"environment variable ACCELERATE_MIXED_PRECISION is {precision!r}; accelerate takes "
            f"{', '.join(MIXED_PRECISION)}"
        )
    for name in LAUNCHER_COUNTS:
        value = os.environ.get(name)
        auto = value == "auto" and name == "ACCELERATE_GRADIENT_ACCUMULATION_STEPS"
        if value is not None and launcher_count(name, 0) is None and not auto:
            return f"environment variable {name} is {value!r}; expected a whole number"
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage not in (None, "", "auto") and stage not in ("0", "1", "2", "3"):
        return f"environment variable ACCELERATE_DEEPSPEED_ZERO_STAGE is {stage!r}; expected 0-3"
    world, rank = launcher_count("WORLD_SIZE", 1), launcher_count("RANK", 0)
    if world < 1:
        return f"environment variable WORLD_SIZE is {world}; expected at least 1"
    if rank >= world:
        return (
            f"environment variable RANK is {rank} but WORLD_SIZE is {world}; a rank counts from "
            "0 to WORLD_SIZE - 1"
        )
    return None


def launcher_count(name: str, default: int) -> int | None:
    """A whole-number launcher variable (WORLD_SIZE, RANK, ...): `default` when unset, None when
    it is not a whole number. ASCII digits only: '²'.isdigit() is true and int() refuses it."""
    value = os.environ.get(name)
    if value is None:
        return default
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def uses_deepspeed() -> bool:
    """Whether `accelerate launch` set this process up for DeepSpeed, read as accelerate reads it
    (its truth values: `1` counts as well as `true`); the rules, the accelerator and the
    preemption resume command must agree."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in TRUE


def deepspeed_zero_stage() -> int | None:
    """The ZeRO stage `accelerate launch` set up for this process, or None without DeepSpeed."""
    if not uses_deepspeed():
        return None
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    stage = _deepspeed_config().get("zero_optimization", {}).get("stage", stage)
    return int(stage) if stage not in (None, "", "auto") else 0


def _one_quantisation(config: RunConfig) -> str | None:
    if config.model.load_in_8bit and config.model.load_in_4bit:
        return "config keys 'model.load_in_8bit' and 'model.load_in_4bit': choose one"
    return None


def _no_full_finetuning_of_quantised_weights(config: RunConfig) -> str | None:
    if config.model.method == "full" and (config.model.load_in_8bit or config.model.load_in_4bit):
        return "config key 'model.method': full fine-tuning cannot update 8-bit/4-bit weights; use lora or ptuning_v2"
    return None


def _prefix_tuning_without_gradient_checkpointing(config: RunConfig) -> str | None:
    # Checkpointed layers run with use_cache=False, which drops the learned prefix keys/values.
    if config.model.method == "ptuning_v2" and config.train.gradient_checkpointing:
        return (
            "config key 'train.gradient_checkpointing': not with model.method=ptuning_v2 "
            "(checkpointed layers drop the learned prefix key/values)"
        )
    return None


def _prefix_init_from_tokens_needs_a_plain_prefix(config: RunConfig) -> str | None:
    # With an MLP in front, the prefix is the MLP's output: no weights give chosen keys/values.
    ptuning = config.ptuning
    if config.model.method != "ptuning_v2":
        return None
    if ptuning.init == "tokens" and ptuning.prefix_projection:
        return (
            "config key 'ptuning.init': tokens (the default) copies the model's own keys/values "
            "into the prefix, which ptuning.prefix_projection=true cannot take; set ptuning.init=random"
        )
    if ptuning.init == "random" and ptuning.init_text is not None:
        return "config key 'ptuning.init_text': only read with ptuning.init=tokens"
    return None


def _dora_is_lora(config: RunConfig) -> str | None:
    if config.lora.use_dora and config.model.method != "lora":
        return (
            f"config key 'lora.use_dora': only with model.method=lora (got {config.model.method!r})"
        )
    return None


def _dora_on_int8_needs_a_gpu(config: RunConfig) -> str | None:
    import torch

    # Seen with bitsandbytes 0.50 on CPU: DoRA's weight norm drops Int8 state (SCB) after one step.
    if config.lora.use_dora and config.model.load_in_8bit and not torch.cuda.is_available():
        return "config key 'lora.use_dora': DoRA on 8-bit weights fails on CPU (bitsandbytes drops the int8 scales); use load_in_4bit or a GPU"
    return None


def _quantisation_under_zero3(config: RunConfig) -> str | None:
    if deepspeed_zero_stage() != 3:
        return None
    if config.model.load_in_8bit:
        return "config key 'model.load_in_8bit': ZeRO-3 cannot shard LLM.int8 weights; use ZeRO-2 or load_in_4bit"
    storage = config.model.bnb_4bit_quant_storage
    if config.model.load_in_4bit and storage != config.model.dtype:
        # ZeRO-3 flattens every parameter of one dtype together; uint8-packed NF4 breaks that.
        return (
            f"config key 'model.bnb_4bit_quant_storage': under ZeRO-3 it must equal model.dtype "
            f"({config.model.dtype!r}), got {storage!r}"
        )
    return None


def _generate_under_zero3_needs_synced_gpus(config: RunConfig) -> str | None:
    # With sharded weights every rank must join every forward pass, also after its own answers end.
    if (
        config.eval.mode == "generate"
        and config.eval.synced_gpus is False
        and deepspeed_zero_stage() == 3
    ):
        return "config key 'eval.synced_gpus': must not be false for generate-mode evaluation under ZeRO-3"
    return None


DEEPSPEED_COUNTS = (
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
)


def _deepspeed_config() -> dict:
    """The DeepSpeed JSON that `accelerate launch` was given (deepspeed_config_file), read strictly:
    a missing or malformed file, a ZeRO stage DeepSpeed lacks, a count that is neither a whole
    number nor "auto" ended in a traceback from Accelerate or DeepSpeed, after the checks."""
    config_file = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if not config_file or config_file == "none":  # accelerate's own word for "no file"
        return {}
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"DeepSpeed config {path} (deepspeed_config_file) does not exist")
    try:
        value = read_json(path)
    except DataError as error:
        raise ConfigError(f"DeepSpeed config {error}") from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"DeepSpeed config {path}: expected a JSON object, got {type(value).__name__}"
        )
    zero = value.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise ConfigError(
            f"DeepSpeed config {path}: zero_optimization must be an object, got {zero!r}"
        )
    if zero.get("stage", 0) not in (0, 1, 2, 3, "auto") or isinstance(zero.get("stage"), bool):
        raise ConfigError(
            f"DeepSpeed config {path}: zero_optimization.stage is {zero['stage']!r}; "
            "DeepSpeed's ZeRO stages are 0, 1, 2 and 3"
        )
    for key in DEEPSPEED_COUNTS:
        count = value.get(key, "auto")
        if count != "auto" and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ConfigError(
                f"DeepSpeed config {path}: {key} is {count!r}; expected a whole number of at "
                'least 1, or "auto" (the run config\'s)'
            )
    return value


def _one_micro_batch_size(config: RunConfig) -> str | None:
    # A number in the DeepSpeed JSON wins over train.batch_size; run.json would record the wrong one.
    if deepspeed_zero_stage() is None:
        return None
    micro = _deepspeed_config().get("train_micro_batch_size_per_gpu", "auto")
    if micro != "auto" and micro != config.train.batch_size:
        return (
            f"config key 'train.batch_size': is {config.train.batch_size} but the DeepSpeed config "
            f"sets train_micro_batch_size_per_gpu {micro}; set it in the run config only "
            '("auto" in the DeepSpeed config)'
        )
    return None


def _one_gradient_accumulation(config: RunConfig) -> str | None:
    # Accelerate lets `accelerate launch --gradient_accumulation_steps` (or a number in the
    # DeepSpeed JSON) silently win over the run config; then run.json would record the wrong one.
    launcher = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if deepspeed_zero_stage() is not None:
        launcher = _deepspeed_config().get("gradient_accumulation_steps", launcher)
    if launcher not in (None, "auto") and int(launcher) != config.train.grad_accum:
        return (
            f"config key 'train.grad_accum': is {config.train.grad_accum} but the launcher sets "
            f"gradient accumulation {launcher}; set it in the run config only"
        )
    return None


def _skipping_batches_while_accumulating_on_several_ranks(config: RunConfig) -> str | None:
    # A batch skipped at the end of an accumulation window runs no backward, and gradients are
    # synchronised in that backward (DDP's all-reduce; DeepSpeed's reduce and step): the ranks
    # would step on unsynchronised gradients, or DeepSpeed's window would shift.
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1 or deepspeed_zero_stage() is not None
    if config.train.skip_nonfinite and config.train.grad_accum > 1 and several:
        return (
            "config key 'train.skip_nonfinite': not with train.grad_accum > 1 on several "
            "processes or under DeepSpeed (a skipped batch would skip its gradient sync); "
            "use grad_accum=1"
        )
    return None


RULES: list[Callable[[RunConfig], str | None]] = [
    _launcher_environment,  # first: the rules after it parse these variables
    _known_dataset,
    _template_has_text,
    _label_lists,
    _fp16_needs_cuda,
    _one_quantisation,
    _no_full_finetuning_of_quantised_weights,
    _prefix_tuning_without_gradient_checkpointing,
    _prefix_init_from_tokens_needs_a_plain_prefix,
    _dora_is_lora,
    _dora_on_int8_needs_a_gpu,
    _quantisation_under_zero3,
    _generate_under_zero3_needs_synced_gpus,
    _one_gradient_accumulation,
    _one_micro_batch_size,
    _skipping_batches_while_accumulating_on_several_ranks,
    _fusion_model_keys,
    _mine_needs_two_modalities,
    _fusion_needs_pooling_layers,
    _transcripts_feed_a_text_encoder,
    _train_on_dev_selects_nothing_on_dev,
]


def check_rules(config: RunConfig) -> None:
    for rule in RULES:
        message = rule(config)
        if message:
            raise ConfigError(message)
