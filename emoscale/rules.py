"""Which options cannot be combined: every rule is a named check with a one-line reason.

All of them run in `config.validate`, before any model or data is loaded (LLaMA-Factory's parser is
the model for this). Add a rule by writing a function and listing it in RULES.
"""

from __future__ import annotations

from collections.abc import Callable

from emoscale.config import RunConfig
from emoscale.errors import ConfigError


def _template_has_text(config: RunConfig) -> str | None:
    template = config.prompt.template
    if template is not None and "{text}" not in template:
        return "config key 'prompt.template': must contain {text} (and may contain {labels})"
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


RULES: list[Callable[[RunConfig], str | None]] = [
    _known_dataset,
    _template_has_text,
    _fp16_needs_cuda,
    _fusion_model_keys,
    _mine_needs_two_modalities,
]


def check_rules(config: RunConfig) -> None:
    for rule in RULES:
        message = rule(config)
        if message:
            raise ConfigError(message)
