"""Load a local causal LM (optionally 8-bit/4-bit) and make trainable what `model.method` trains.

Methods: `none` (zero-shot, nothing trains), `full`, and PEFT's `lora` (+DoRA), `ptuning_v2`
(prefix tuning in every layer), `prompt_tuning` and `p_tuning`. PEFT owns the adapter code and its
on-disk format, so an emoscale adapter loads with `PeftModel.from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import PartialState, init_empty_weights
from peft import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedTokenizerBase,
)

from emoscale.config import RunConfig, rules
from emoscale.errors import ConfigError, reason

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_folder(path: str | None) -> Path:
    if path is None:
        raise ConfigError("config key 'model.path': required (a local Hugging Face model folder)")
    folder = Path(path)
    if folder.is_file():
        hint = (
            f"; convert it first: emoscale convert gguf {folder} --out DIR"
            if folder.suffix.lower() == ".gguf"
            else ""
        )
        raise ConfigError(f"config key 'model.path': {folder} is a file, not a model folder{hint}")
    if not folder.is_dir():
        raise ConfigError(f"config key 'model.path': model folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"config key 'model.path': {folder} has no config.json (not a Hugging Face model folder)"
        )
    _check_causal_lm(folder)
    return folder


CAUSAL_LM_CLASSES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _check_causal_lm(folder: Path) -> None:
    """model.path is a causal LM: config.json's `architectures` names a class that generates
    text. A sentence encoder (MiniLM's BertModel), a speech encoder or a classifier checkpoint
    loaded with a fresh random LM head and trained (or, under `estimate`, failed with a
    traceback). A config.json without `architectures`, or one that does not parse, is left to the
    checks after this one."""
    try:
        hf_config = json.loads((folder / "config.json").read_text())
        architectures = hf_config.get("architectures")
        auto_map = hf_config.get("auto_map") or {}
    except (ValueError, AttributeError, UnicodeDecodeError):
        return
    if isinstance(auto_map, dict) and "AutoModelForCausalLM" in auto_map:
        return  # its own code names the LM class (ChatGLM2's ChatGLMModel folder)
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        return
    if architectures and not any(a.endswith(CAUSAL_LM_CLASSES) for a in architectures):
        raise ConfigError(
            f"config key 'model.path': {folder} holds a {', '.join(architectures)}, not a causal "
            "LM (config.json's architectures name no ...ForCausalLM class); the prompt "
            "classifier needs a model that generates text"
        )


def load_tokenizer(config: RunConfig) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            config.model.path, trust_remote_code=config.model.trust_remote_code
        )
    except Exception as error:  # noqa: BLE001 (a damaged tokenizer file raises KeyError, TypeError, ...)
        raise ConfigError(
            f"config key 'model.path': transformers cannot load the tokenizer of "
            f"{config.model.path} ({type(error).__name__}: {reason(error)})"
        ) from None
    if tokenizer.eos_token_id is None:
        # Every answer ends with EOS (or a chat template's end-of-turn) and it pads when no pad
        # token is set: without one the label scorer failed with a torch traceback.
        raise ConfigError(
            f"config key 'model.path': the tokenizer of {config.model.path} has no EOS token "
            "(eos_token in tokenizer_config.json); a causal LM's answer ends with one"
        )
    if tokenizer.pad_token_id is None:
        # Many causal LMs ship without a pad token; padding is masked out, so EOS serves.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: RunConfig) -> torch.nn.Module:
    quantization = _quantization_config(config)
    model = AutoModelForCausalLM.from_pretrained(
        config.model.path,
        dtype=DTYPES[config.model.dtype],
        trust_remote_code=config.model.trust_remote_code,
        quantization_config=quantization,
        device_map=_device_map() if quantization else None,
    )
    method, checkpointing = config.model.method, config.train.gradient_checkpointing
    if config.model.load_in_4bit:
        keep_4bit_layout_on_cpu(model)
    if quantization is not None:
        # Casts norms to fp32 and freezes the quantised weights (the QLoRA recipe).
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if checkpointing and method != "full":
        # Frozen embeddings give checkpointed blocks inputs without grad; adapters would get none.
        model.enable_input_require_grads()
    if method == "none":
        model.requires_grad_(False)
    elif method != "full":
        model = get_peft_model(model, peft_config(config, model.config.model_type))
    return model


def keep_4bit_layout_on_cpu(model: torch.nn.Module) -> None:
    """bitsandbytes (0.49-0.50) repacks a 4-bit layer's weights into a CPU inference layout at its
    first forward in eval mode without grad, on CPUs with AVX512-BF16, and never unpacks them when
    training resumes: every later training forward and backward is wrong (measured: gradients off
    by their own size). Such a forward comes before training (P-Tuning v2's prefix from the
    model's own keys/values) and between steps (evaluation): P-Tuning v2 on 4-bit weights stopped
    learning. Its dequantisation does not read that layout either (DoRA's weight norms: logits off
    by 2 of 5.4), and it computes in bf16 (LoRA logits off by 0.1). So every 4-bit model, trained or
    predicting, keeps the layout training reads: predict and eval give the trainer's own scores,
    a little more slowly on CPU. GPUs are not affected."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _device_map() -> dict | None:
    # bitsandbytes weights are placed at load time, on this process' device; under ZeRO-3 DeepSpeed
    # places them (rules.py allows 4-bit there only without a device map).
    if rules.deepspeed_zero_stage() == 3:
        return None
    if torch.cuda.is_available():
        return {"": PartialState().local_process_index}
    return {"": "cpu"}


def _quantization_config(config: RunConfig) -> BitsAndBytesConfig | None:
    model = config.model
    if model.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    if model.load_in_4bit:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=model.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=model.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=DTYPES[model.bnb_4bit_compute_dtype],
            bnb_4bit_quant_storage=DTYPES.get(model.bnb_4bit_quant_storage, torch.uint8),
        )
    return None


def lora_targets(configured: list[str] | None, model_type: str | None) -> list[str] | str | None:
    """The configured modules, else PEFT's default for the architecture, else query/value as for
    Llama (PEFT has no default for some, e.g. transformers' native `glm`)."""
    if configured == ["all-linear"]:
        return "all-linear"  # PEFT's every-linear-layer shorthand (a string, not a list)
    if configured:
        return list(configured)
    if model_type is None:
        return None  # PEFT decides from the model itself
    return list(
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, ["q_proj", "v_proj"])
    )


def check_adapters(config: RunConfig) -> None:
    """PEFT's own checks on the model's skeleton, built on the meta device from config.json (no
    weight is read: seconds even for 6B), so that a LoRA target that names no module, or a module
    PEFT cannot adapt, is one line before the weights load. Every target must name a module (PEFT
    itself only refuses a list none of whose names matches)."""
    path, method = config.model.path, config.model.method
    if method in ("none", "full"):
        return
    remote = config.model.trust_remote_code
    try:
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=remote)
    except Exception:  # noqa: BLE001 (the real load reports its own problems, in one line)
        return
    peft = peft_config(config, hf_config.model_type)
    if method == "lora" and isinstance(peft.target_modules, set | list):
        names = [name for name, _ in skeleton.named_modules()]
        for target in sorted(peft.target_modules):
            # PEFT's rule for a list of names: the module's dotted name is or ends with it.
            if not any(name == target or name.endswith("." + target) for name in names):
                linear = {
                    name.rsplit(".", 1)[-1]
                    for name, module in skeleton.named_modules()
                    if isinstance(module, torch.nn.Linear)
                }
                raise ConfigError(
                    f"config key 'lora.target_modules': {target!r} names no module of {path} "
                    f"(its linear layers: {', '.join(sorted(linear)[:20])})"
                )
    try:
        with torch.device("meta"):  # the adapter's tensors on the meta device too: no memory
            get_peft_model(skeleton, peft)
    except ValueError as error:  # e.g. a target that is a block, not a layer LoRA adapts
        raise ConfigError(
            f"model.method={method}: PEFT cannot adapt {path}: {reason(error)}"
        ) from None


def peft_config(config: RunConfig, model_type: str | None = None):
    """PEFT's config for `model.method`; PEFT owns the adapter code and its on-disk format."""
    method, lora, ptuning = config.model.method, config.lora, config.ptuning
    if method == "lora":
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora_targets(lora.target_modules, model_type),
            use_dora=lora.use_dora,
        )
    if method == "ptuning_v2":  # deep prompt tuning = prefix keys/values in every layer
        return PrefixTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=ptuning.num_virtual_tokens,
            prefix_projection=ptuning.prefix_projection,
            encoder_hidden_size=ptuning.encoder_hidden_size,
        )
    if method == "prompt_tuning":
        return PromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=ptuning.num_virtual_tokens
        )
    if method == "p_tuning":
        return PromptEncoderConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=ptuning.num_virtual_tokens,
            encoder_hidden_size=ptuning.encoder_hidden_size,
        )
    raise ValueError(f"no PEFT config for method {method!r}")


def trainable_parameters(model: torch.nn.Module) -> dict:
    peft_model = next((module for module in model.modules() if isinstance(module, PeftModel)), None)
    if peft_model is not None:  # counts 4-bit packed weights as the parameters they hold
        trainable, total = peft_model.get_nb_trainable_parameters()
        inside = {id(p) for p in peft_model.parameters()}
        for (
            p
        ) in model.parameters():  # and what sits beside the PEFT model (the fusion family's heads)
            if id(p) not in inside:
                total += p.numel()
                trainable += p.numel() if p.requires_grad else 0
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}
