"""The speech encoder: any local WavLM / HuBERT / wav2vec2 folder: frozen, LoRA on q and v, or full.

`model.audio_method: lora` puts PEFT LoRA on the self-attention query and value projections
(LoRA-MER: r=2, alpha=16, dropout 0.1 gives 73,728 trainable parameters on a 12-layer, 768-wide
base model: 12 layers x 2 projections x (768x2 + 2x768)). `frozen` trains nothing in it and runs it
in eval mode (no dropout, no SpecAugment) without building a graph; `full` trains every weight.

Features are the last hidden layer, or with `model.audio_layers: weighted` a learned softmax-weighted
sum of all hidden layers (the CNN projection and every transformer layer), as in SUPERB.

**Batch independence (issue 15).** wav2vec2-base, HuBERT-base and WavLM-base-plus normalise their
first convolution with GroupNorm over time (`feat_extract_norm="group"`): zeros padded onto a short
clip change the statistics of every real frame, and no attention mask can undo that. For those
models the convolutional front end runs on each clip's own samples (clips of equal length together),
and the frames are padded afterwards; the attention mask is then always passed (also to HuBERT, whose
extractor says `return_attention_mask=False` because it was pretrained on unpadded single clips), so
padded frames reach neither self-attention nor pooling. A clip's features are then those it has
alone. Layer-norm front ends normalise each frame on its own and run batched, as before.

WavLM's attention in transformers hands its q/k/v weights straight to
F.multi_head_attention_forward, never calling the projection modules, so LoRA put on them by PEFT
would silently do nothing (and DDP would stop on parameters without gradient). WavLM attention
modules therefore get `attention_through_projections`, the same computation with the modules called.
"""

from __future__ import annotations

import contextlib
import math
import types
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from emoscale.config import RunConfig
from emoscale.errors import ConfigError
from emoscale.models.model_folder import read_config_json


def check_speech_folder(path: str | None, key: str = "model.audio_path") -> Path:
    """A model folder with config.json and a feature extractor, holding a conv front-end speech model."""
    if path is None:
        raise ConfigError(
            f"config key {key!r}: required (a local WavLM / HuBERT / wav2vec2 folder)"
        )
    folder = Path(path)
    if folder.is_file():
        raise ConfigError(f"config key {key!r}: {folder} is a file, not a model folder")
    if not folder.is_dir():
        raise ConfigError(f"config key {key!r}: model folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"config key {key!r}: {folder} has no config.json (not a Hugging Face model folder)"
        )
    if not (folder / "preprocessor_config.json").is_file():
        raise ConfigError(
            f"config key {key!r}: {folder} has no preprocessor_config.json (its feature extractor)"
        )
    config = read_config_json(folder, key)
    if "conv_kernel" not in config:
        raise ConfigError(
            f"config key {key!r}: {folder} holds a {config.get('model_type')!r} model, not a speech encoder "
            "with a convolutional front end (WavLM, HuBERT, wav2vec2)"
        )
    return folder


def receptive_field(config) -> int:
    """Samples the conv front end needs for one output frame (400 for the base models)."""
    field, stride = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * stride
        stride *= step
    return field


def attention_through_projections(self, hidden_states, attention_mask, gated_position_bias):
    """WavLMAttention.torch_multi_head_self_attention, computed by calling q/k/v/out_proj."""
    batch, length, width = hidden_states.shape
    heads = self.num_heads

    def split(x: torch.Tensor) -> torch.Tensor:  # [B, T, width] -> [B, heads, T, width / heads]
        return x.view(batch, length, heads, width // heads).transpose(1, 2)

    query = split(self.q_proj(hidden_states)) / math.sqrt(width // heads)
    key, value = split(self.k_proj(hidden_states)), split(self.v_proj(hidden_states))
    scores = query @ key.transpose(-1, -2) + gated_position_bias.view(batch, heads, length, length)
    if attention_mask is not None:
        scores = scores.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
    weights = nn.functional.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
    output = (weights @ value).transpose(1, 2).reshape(batch, length, width)
    return self.out_proj(output), weights  # [B, heads, T, T], the shape transformers returns


def front_end_per_clip(self, input_values: torch.Tensor) -> torch.Tensor:
    """A conv feature encoder's forward, run on each clip's own samples (`self.clip_lengths`, set by
    SpeechEncoder.forward before each call; None: batched as usual). Clips of one length share a
    call, so a batch of equal-length clips costs one call. -> [B, channels, frames], zero-padded."""
    lengths = self.clip_lengths
    width = input_values.shape[-1]
    if lengths is None or bool((lengths == width).all()):
        return self.batched_forward(input_values)
    parts: dict[int, torch.Tensor] = {}
    rows_by_length: dict[int, torch.Tensor] = {}
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero().squeeze(1)
        rows_by_length[length] = rows
        parts[length] = self.batched_forward(input_values[rows, :length])
    frames = self.output_frames(width)
    first = next(iter(parts.values()))
    output = first.new_zeros(input_values.shape[0], first.shape[1], frames)
    for length, features in parts.items():
        output[rows_by_length[length], :, : features.shape[-1]] = features
    return output


def run_front_end_per_clip(base_model: nn.Module) -> bool:
    """Give a GroupNorm front end `front_end_per_clip`; returns whether it had one (layer norm
    needs nothing: each frame is normalised on its own)."""
    if getattr(base_model.config, "feat_extract_norm", "layer") != "group":
        return False
    front_end = base_model.feature_extractor
    front_end.batched_forward = front_end.forward  # the bound original
    front_end.clip_lengths = None
    front_end.output_frames = lambda samples: int(
        base_model._get_feat_extract_output_lengths(torch.tensor(samples))
    )
    front_end.forward = types.MethodType(front_end_per_clip, front_end)
    return True


def use_projection_modules(model: nn.Module) -> int:
    """Give every WavLM attention module `attention_through_projections`; returns how many."""
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    patched = 0
    for module in model.modules():
        if isinstance(module, WavLMAttention):
            module.torch_multi_head_self_attention = types.MethodType(
                attention_through_projections, module
            )
            patched += 1
    return patched


class SpeechEncoder(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        layers: str,
        frozen: bool,
        augmentation: str = "when_trained",
        per_clip_front_end: bool = True,
        pass_attention_mask: bool = True,
    ):
        super().__init__()
        self.encoder = encoder
        self.frozen = frozen
        # fusion.encoder_augmentation: whether the encoder's own dropout and SpecAugment run in
        # training ("when_trained": in the lora and full arms, not in the frozen one).
        self.augmentation = augmentation
        # Both False only to measure the old, batch-dependent behaviour (before issue 15, HuBERT and
        # wav2vec2-base got no mask): benchmarks/bench_batch_independence.py.
        self.per_clip = per_clip_front_end and run_front_end_per_clip(self._base())
        self.pass_attention_mask = pass_attention_mask
        config = self._base().config
        self.hidden_size = config.hidden_size
        self.layer_weights = (
            nn.Parameter(torch.zeros(config.num_hidden_layers + 1))
            if layers == "weighted"
            else None
        )

    def _base(self) -> nn.Module:
        return (
            self.encoder.get_base_model() if isinstance(self.encoder, PeftModel) else self.encoder
        )

    def train(self, mode: bool = True):
        super().train(mode)
        augment = {"always": True, "never": False}.get(self.augmentation, not self.frozen)
        if not augment:
            self.encoder.eval()
        return self

    def forward(
        self, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """values, mask [B, samples] -> (features [B, frames, hidden], frame mask [B, frames] bool)."""
        weighted = self.layer_weights is not None
        front_end = self._base().feature_extractor
        if self.per_clip:
            front_end.clip_lengths = mask.sum(dim=-1)
        try:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
                output = self.encoder(
                    input_values=values,
                    attention_mask=mask if self.pass_attention_mask else None,
                    output_hidden_states=weighted,
                )
        finally:
            if self.per_clip:
                front_end.clip_lengths = None
        if weighted:
            layers = torch.stack(output.hidden_states, dim=0)  # [L+1, B, T, H]
            weights = self.layer_weights.softmax(dim=0).to(layers.dtype)
            features = (weights[:, None, None, None] * layers).sum(dim=0)
        else:
            features = output.last_hidden_state
        lengths = self._base()._get_feat_extract_output_lengths(mask.sum(dim=-1))
        frame_mask = (
            torch.arange(features.shape[1], device=features.device)[None] < lengths[:, None]
        )
        return features, frame_mask


@contextlib.contextmanager
def _without_zero3_init():
    """transformers cannot initialise WavLM's weight-normed positional convolution inside ZeRO-3's
    zero.Init; a speech encoder is small, so it loads whole and DeepSpeed partitions it in prepare."""
    from transformers.integrations import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    if not is_deepspeed_zero3_enabled():
        yield
        return
    from accelerate.state import AcceleratorState

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        AcceleratorState().deepspeed_plugin.set_deepspeed_weakref()


def load_speech_encoder(config: RunConfig) -> SpeechEncoder:
    from transformers import AutoModel

    # layerdrop=0: a dropped layer leaves its LoRA weights without gradient, which DDP rejects, and
    # drops a hidden state from the weighted sum.
    with _without_zero3_init():
        encoder = AutoModel.from_pretrained(config.model.audio_path, layerdrop=0.0)
    use_projection_modules(encoder)
    frozen = config.model.audio_method == "frozen"
    if frozen:
        encoder.requires_grad_(False)
    elif config.model.audio_method == "lora":
        fusion = config.fusion
        encoder = get_peft_model(
            encoder,
            LoraConfig(
                r=fusion.lora_r,
                lora_alpha=fusion.lora_alpha,
                lora_dropout=fusion.lora_dropout,
                target_modules=list(fusion.lora_target_modules),
            ),
        )
    return SpeechEncoder(
        encoder, config.model.audio_layers, frozen, config.fusion.encoder_augmentation
    )
