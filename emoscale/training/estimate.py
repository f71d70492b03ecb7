"""Predict peak GPU memory per device for a training run, without loading any weights.

    rows = estimate(LlamaConfig(...), RunShape(batch_size=16, seq_len=128, method="lora"), num_gpus=1)
    print(format_table(rows))

The model is built from its config on the meta device and wrapped with PEFT exactly as a run would
wrap it, so parameter counts (trainable, frozen, quantisable, largest layer) are PEFT's own. Memory is
then the sum of four terms, each in bytes per device:

- weights: frozen params in `dtype` or bitsandbytes' storage (LLM.int8: 1 byte, NF4: 0.5 byte plus
  block scales); bitsandbytes converts only nn.Linear layers and keeps the output embedding (lm_head)
  and tied weights unquantised (transformers' `get_keys_to_not_convert`); embeddings and norms are
  not Linear and stay in `dtype` too. PEFT keeps adapters in fp32 (`autocast_adapter_dtype`).
- grads: trainable params only, in the trainable weights' dtype.
- optimizer: AdamW's two fp32 states, plus an fp32 master copy when trainable weights are 16-bit,
  plus (DeepSpeed ZeRO) the fp32 gradient partition the optimizer steps on.
- activations: what autograd saves for backward, layer by layer (counted from the modules' code:
  see `_layer_saved_bytes`), plus the largest transient: usually the loss over B x C x V logits in
  fp32 (log-softmax output, its gradient and the logits' gradient: 12 bytes per logit), which is the
  peak for small models and short sequences. C is every position for a plain causal-LM loss, and
  only the columns that predict an answer token for emoscale's loss (`logit_columns`).

ZeRO rows follow DeepSpeed's own estimators (`estimate_zero2_model_states_mem_needs`, `..zero3..`):
stage 1 partitions optimizer states, 2 also gradients, 3 also weights (plus one gathered layer,
4 bytes x its params); offload moves optimizer states (and under stage 3 the weights) to CPU.
One deliberate difference: for stage 3 we count the 16-bit parameter partition (2 bytes/param / N)
that DeepSpeed's zero3 formula leaves out of its 18 bytes/param.

Known limits:
- CUDA context and allocator fragmentation are not in the totals (low by ~0.5-1 GiB); `fits_24gb`
  adds CUDA_OVERHEAD_GIB for them. DeepSpeed's communication buckets are not counted either.
- The sum assumes gradients, optimizer states and peak activations coexist; in a real step the
  gradients grow while activations are freed, so the model-state part is an upper bound.
- Attention: SDPA (flash / memory-efficient kernels, no T x T matrix) or eager. With grouped-query
  attention and a padding mask, transformers repeats K/V to all heads before SDPA; we assume the
  mask is there (emoscale always passes one), which overestimates unpadded batches slightly.
- Activations assume PEFT's fp32 adapters (DeepSpeed casts them to 16-bit: slightly less), and
  non-quantised params in `dtype` (peft's prepare_model_for_kbit_training upcasts them to fp32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import init_empty_weights
from peft import PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, GlmConfig, PretrainedConfig
from transformers.quantizers.base import get_keys_to_not_convert

from emoscale.config import RunConfig
from emoscale.errors import ConfigError, reason
from emoscale.models import adapters
from emoscale.models.model_folder import read_config_json

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
METHODS = ("lora", "ptuning_v2", "prompt_tuning", "p_tuning", "full")
CUDA_OVERHEAD_GIB = 1.0  # CUDA context (~0.5 GiB) plus allocator slack; outside torch's count
GPU_GIB = 24.0
# (label, ZeRO stage, offload): stage 0 is plain DDP / one GPU without DeepSpeed.
ZERO_SETTINGS = (("none", 0, False), ("zero1", 1, False), ("zero2", 2, False), ("zero3", 3, False),
                 ("zero2+offload", 2, True), ("zero3+offload", 3, True))  # fmt: skip

# Which tensor feeds a linear layer, by the layer's attribute name (Llama, Qwen2, Mistral, GLM ...):
# linears that share an input (q/k/v, gate/up) share one saved tensor.
INPUT_OF_LINEAR = {
    **dict.fromkeys(
        ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "W_pack"), "norm1"
    ),
    **dict.fromkeys(("o_proj", "dense", "out_proj"), "attn"),
    **dict.fromkeys(("gate_proj", "up_proj", "gate_up_proj", "dense_h_to_4h", "w1", "w3"), "norm2"),
    **dict.fromkeys(("down_proj", "dense_4h_to_h", "w2"), "act"),
}


@dataclass
class RunShape:
    batch_size: int = 16
    seq_len: int = 128  # text tokens per example (prompt + answer), without virtual tokens
    method: str = "lora"  # one of METHODS
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None  # None: PEFT's default for the architecture
    num_virtual_tokens: int = 32  # ptuning_v2 / prompt_tuning / p_tuning
    prefix_projection: bool = False  # ptuning_v2: reparameterise the prefix through an MLP
    encoder_hidden_size: int = 512  # that MLP's (or p_tuning's prompt encoder's) hidden size
    dtype: str = "bfloat16"  # weights and activations; adapters stay fp32 (PEFT)
    quantization: str | None = None  # None, "8bit" (LLM.int8) or "4bit" (NF4)
    double_quant: bool = True  # 4bit: quantise the block scales too (QLoRA)
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # or "eager"
    # Columns that get logits: None = every position (a plain causal-LM loss, e.g. Trainer's);
    # emoscale's loss asks only for the columns that predict an answer token (models/prompt_lm).
    logit_columns: int | None = None
    device: str = "cuda"  # "cpu" only to compare with CPU measurements (dropout masks differ)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r}: expected one of {', '.join(DTYPE_BYTES)}")
        if self.quantization not in (None, "8bit", "4bit"):
            raise ValueError(f"quantization {self.quantization!r}: expected None, '8bit' or '4bit'")
        if self.quantization and self.method == "full":
            raise ValueError("quantized weights cannot be fully fine-tuned: use lora or prompts")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation {self.attn_implementation!r}: sdpa or eager")


@dataclass
class Row:
    setting: str  # none, zero1, zero2, zero3, zero2+offload, zero3+offload
    weights_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    total_gib: float  # per GPU
    cpu_gib: float  # host memory for offloaded states, whole node, without DeepSpeed's buffers
    fits_24gb: bool  # total + CUDA_OVERHEAD_GIB <= 24 GiB


@dataclass
class ModelFacts:
    """What the meta model tells about parameters (counts, not bytes)."""

    trainable: int
    total: int
    quantized: int  # frozen params that bitsandbytes would quantise
    quantized_rows: int  # their output rows (8-bit keeps one fp32 scale per row)
    largest_linear: int  # params of the largest quantised linear (dequantised on the fly)
    largest_layer: int  # largest single module's own params (DeepSpeed ZeRO-3's gathered layer)
    encoder_hidden: int  # prompt-encoder MLP width (ptuning_v2 with projection, p_tuning)
    # One decoder layer's linears: (name, kind: lora / full / frozen, in_features, out_features).
    layer_linears: list[tuple[str, str, int, int]] = field(default_factory=list)
    norms_per_layer: int = 2
    norms_trainable: bool = False
    lm_head_trainable: bool = False


# --- the meta model ------------------------------------------------------------------------------


def peft_config(model_config: PretrainedConfig, shape: RunShape):
    """The PEFT config a run with `shape` uses (None for full fine-tuning): adapters.peft_config's."""
    if shape.method == "full":
        return None
    run = RunConfig.model_validate(
        {
            "model": {"method": shape.method},
            "lora": {"r": shape.lora_r, "alpha": shape.lora_alpha, "dropout": shape.lora_dropout,
                     "target_modules": shape.lora_target_modules},
            "ptuning": {"num_virtual_tokens": shape.num_virtual_tokens, "prefix_projection": shape.prefix_projection,
                        "encoder_hidden_size": shape.encoder_hidden_size},
        }
    )  # fmt: skip
    return adapters.peft_config(run, model_config.model_type)


def meta_model(model_config: PretrainedConfig, shape: RunShape) -> tuple[torch.nn.Module, ...]:
    """(the trainable model, the bare causal LM inside it), all parameters on the meta device."""
    with init_empty_weights():  # PEFT's new modules must be created inside, too
        try:  # a size transformers' config class took but torch refuses (vocab_size -5)
            base = AutoModelForCausalLM.from_config(model_config)
        except (RuntimeError, ValueError, TypeError) as error:
            folder = Path(getattr(model_config, "_name_or_path", "") or ".")
            raise ConfigError(
                f"config key 'model.path': no model can be built from {folder / 'config.json'} "
                f"({type(error).__name__}: {reason(error)})"
            ) from None
        config = peft_config(model_config, shape)
        model = base if config is None else get_peft_model(base, config)
    return model, base


def count_parameters(model_config: PretrainedConfig, shape: RunShape) -> tuple[int, int]:
    """(trainable, total) parameters of the model a run with `shape` trains, adapters included."""
    model, _ = meta_model(model_config, shape)
    return _count(model)


def _count(model: torch.nn.Module) -> tuple[int, int]:
    params = list(model.parameters())  # shared (tied) parameters are listed once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _layer_structure(layer: torch.nn.Module) -> tuple[list[tuple[str, str, int, int]], list]:
    """One decoder layer's linears as (name, lora / full / frozen, in, out), and its norms."""
    linears, norms = [], []
    for name, module in layer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            linears.append((leaf, "lora", module.in_features, module.out_features))
        elif type(module) is torch.nn.Linear and "lora_" not in name and leaf != "base_layer":
            kind = "full" if module.weight.requires_grad else "frozen"
            linears.append((leaf, kind, module.in_features, module.out_features))
        elif "norm" in type(module).__name__.lower():
            norms.append(module)
    unknown = [leaf for leaf, *_ in linears if leaf not in INPUT_OF_LINEAR]
    if unknown:
        raise ValueError(
            f"unsupported architecture: unknown linear layers {unknown} in a decoder layer"
        )
    return linears, norms


def model_facts(model_config: PretrainedConfig, shape: RunShape) -> ModelFacts:
    model, base = meta_model(model_config, shape)
    trainable, total = _count(model)
    # bitsandbytes replaces nn.Linear layers except these (lm_head, tied weights); not the adapters.
    skip = get_keys_to_not_convert(base)
    quantisable = [
        module
        for name, module in base.named_modules()
        if type(module) is torch.nn.Linear
        and "lora_" not in name
        and not any(name == key or name.endswith("." + key) for key in skip)
    ]
    layers = next(
        m
        for m in base.modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) == model_config.num_hidden_layers
    )
    linears, norms = _layer_structure(layers[0])
    adapter = model.active_peft_config if isinstance(model, PeftModel) else None
    lm_head = base.get_output_embeddings()
    return ModelFacts(
        trainable=trainable,
        total=total,
        quantized=sum(m.weight.numel() for m in quantisable) if shape.quantization else 0,
        quantized_rows=sum(m.out_features for m in quantisable) if shape.quantization else 0,
        largest_linear=max(m.weight.numel() for m in quantisable),
        largest_layer=max(
            sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()
        ),
        encoder_hidden=getattr(adapter, "encoder_hidden_size", None) or 0,
        layer_linears=linears,
        norms_per_layer=len(norms),
        norms_trainable=any(p.requires_grad for norm in norms for p in norm.parameters()),
        lm_head_trainable=lm_head is not None and lm_head.weight.requires_grad,
    )


# --- activations -----------------------------------------------------------------------------------


@dataclass
class _Dims:
    batch: int
    seq_q: int  # query length: text, plus virtual tokens for prompt tuning / p_tuning
    seq_kv: int  # key/value length: plus the prefix for ptuning_v2
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    layers: int


def _dims(model_config: PretrainedConfig, shape: RunShape) -> _Dims:
    c = model_config
    virtual = shape.num_virtual_tokens if shape.method in ("prompt_tuning", "p_tuning") else 0
    prefix = shape.num_virtual_tokens if shape.method == "ptuning_v2" else 0
    heads = c.num_attention_heads
    return _Dims(
        batch=shape.batch_size,
        seq_q=shape.seq_len + virtual,
        seq_kv=shape.seq_len + virtual + prefix,
        hidden=c.hidden_size,
        heads=heads,
        kv_heads=getattr(c, "num_key_value_heads", None) or heads,
        head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
        ffn=c.intermediate_size,
        vocab=c.vocab_size,
        layers=c.num_hidden_layers,
    )


def _layer_saved_bytes(d: _Dims, facts: ModelFacts, shape: RunShape, input_grad: bool) -> int:
    """Bytes autograd keeps for one decoder layer's backward (Llama / Qwen2 / GLM code).

    `input_grad`: whether the layer input needs a gradient (false in the first layer of LoRA and
    prefix runs, whose embeddings are frozen: then the first norm and LoRA dropouts save nothing).
    """
    b = DTYPE_BYTES[shape.dtype]
    tokens, kv_tokens = d.batch * d.seq_q, d.batch * d.seq_kv
    q_dim = d.heads * d.head_dim
    # Repeated K/V (transformers' repeat_kv) when heads are grouped and a mask is passed, or eager.
    kv_dim = q_dim if d.kv_heads != d.heads else d.kv_heads * d.head_dim
    group_size = {"norm1": d.hidden, "attn": q_dim, "norm2": d.hidden, "act": d.ffn}
    groups: set[str] = set()  # shared tensors, each saved once
    saved = 0

    # RMSNorm: x.to(fp32) is saved by pow and by x * rsqrt; a trainable weight also saves its input.
    for index in range(facts.norms_per_layer):
        if index > 0 or input_grad:
            saved += 4 * tokens * d.hidden + 4 * tokens
    if facts.norms_trainable:
        groups |= {"norm1", "norm2"}

    # Attention: RoPE'd q, k, v (+ output and log-sum-exp for SDPA; fp32 probabilities for eager).
    saved += b * tokens * q_dim + 2 * b * kv_tokens * kv_dim
    if shape.attn_implementation == "sdpa":
        groups.add("attn")
        saved += 4 * d.batch * d.heads * d.seq_q
    else:
        probs = d.batch * d.heads * d.seq_q * d.seq_kv
        saved += 4 * probs + (b * probs if b != 4 else 0)  # softmax in fp32, then cast for matmul

    # Gated MLP: silu saves the gate, the product saves silu(gate) and up.
    saved += 3 * b * tokens * d.ffn

    lora_bytes = 4  # PEFT keeps adapters in fp32 and casts their input to fp32
    mask_bytes = 1 if shape.device == "cuda" else (lora_bytes if b == 2 else b)
    for leaf, kind, fan_in, _ in facts.layer_linears:
        group = INPUT_OF_LINEAR[leaf]
        # A trained linear saves its input; so does LLM.int8's matmul, even for frozen weights.
        if kind == "full" or shape.quantization == "8bit":
            groups.add(group)
        if kind != "lora":
            continue
        grad_in = input_grad or group != "norm1"
        if shape.lora_dropout > 0:  # each adapter's own dropout output and mask
            saved += tokens * fan_in * (lora_bytes if b == 2 else b)
            saved += tokens * fan_in * mask_bytes if grad_in else 0
        elif b == 2:  # each adapter's own fp32 copy of the input
            saved += tokens * fan_in * lora_bytes
        else:
            groups.add(group)
        saved += tokens * shape.lora_r * (lora_bytes if b == 2 else b)  # lora_A output
    return saved + sum(b * tokens * group_size[g] for g in groups)


def activation_bytes(model_config: PretrainedConfig, shape: RunShape, facts: ModelFacts) -> int:
    """Peak bytes of activations and transients during forward + backward on one GPU."""
    d = _dims(model_config, shape)
    b = DTYPE_BYTES[shape.dtype]
    tokens = d.batch * d.seq_q
    frozen_input = shape.method in ("lora", "ptuning_v2")  # embeddings frozen, nothing before
    layer = _layer_saved_bytes(d, facts, shape, input_grad=True)
    first = _layer_saved_bytes(d, facts, shape, input_grad=not frozen_input)
    # Largest transient inside a layer's backward: gradients of the MLP's B x T x ffn tensors.
    layer_transient = 3 * b * tokens * d.ffn
    if shape.quantization:  # one weight at a time dequantised to `dtype` (forward and backward)
        layer_transient += b * facts.largest_linear
    if shape.gradient_checkpointing:
        # Each layer keeps only its input; backward recomputes one layer at a time.
        saved = d.layers * b * tokens * d.hidden
        layer_transient += layer
    else:
        saved = first + (d.layers - 1) * layer

    # Final norm (fp32 copy), plus its output when the norm or the lm_head trains.
    saved += 4 * tokens * d.hidden + (b * tokens * d.hidden if facts.lm_head_trainable else 0)
    # Loss over the logits in fp32: log-softmax output + its gradient + the logits' gradient.
    columns = min(d.seq_q, shape.logit_columns) if shape.logit_columns else d.seq_q
    loss_transient = 12 * d.batch * columns * d.vocab
    if shape.method == "ptuning_v2" and shape.prefix_projection:  # the prefix MLP on B x P tokens
        saved += 3 * 4 * d.batch * shape.num_virtual_tokens * facts.encoder_hidden
    return saved + max(loss_transient, layer_transient)


# --- model states and rows ------------------------------------------------------------------------


def _quantized_bytes(facts: ModelFacts, shape: RunShape) -> float:
    if shape.quantization == "8bit":
        return facts.quantized + 4 * facts.quantized_rows  # int8 + one fp32 scale per output row
    if shape.quantization == "4bit":
        blocks = facts.quantized / 64  # NF4 in blocks of 64, one absmax per block
        # Double quantisation stores each absmax in 8 bits, plus one fp32 scale per 256 blocks.
        scales = blocks * (1 + 4 / 256) if shape.double_quant else 4 * blocks
        return facts.quantized / 2 + scales
    return 0.0


def _model_state_bytes(facts: ModelFacts, shape: RunShape, stage: int, offload: bool, n: int):
    """(weights, grads, optimizer, cpu) bytes per GPU for one ZeRO setting on `n` GPUs."""
    b = DTYPE_BYTES[shape.dtype]
    trainable = facts.trainable
    frozen = facts.total - facts.trainable - facts.quantized
    frozen_bytes = b * frozen + _quantized_bytes(facts, shape)
    if stage == 0:
        # PEFT adapters are fp32; full fine-tuning trains `dtype` weights with an fp32 master copy.
        t_bytes = 4 if shape.method != "full" else b
        optimizer = (8 + (4 if t_bytes == 2 else 0)) * trainable
        return frozen_bytes + t_bytes * trainable, t_bytes * trainable, optimizer, 0.0
    # DeepSpeed casts the whole module to the 16-bit dtype and keeps fp32 master weights and an fp32
    # gradient partition: 2 + 2 + (4 + 4 + 8) bytes per trainable param, as its estimators count.
    fp32_extra = 8 if b == 2 else 0
    all_weights = frozen_bytes + b * trainable
    weights, grads = all_weights, b * trainable / (n if stage >= 2 else 1)
    optimizer = (8 + fp32_extra) * trainable / n
    gathered = 2 * facts.largest_layer  # ZeRO-3: one layer's 16-bit params, and as much for grads
    if stage == 3:
        weights, grads = all_weights / n + gathered, grads + gathered
    if not offload:
        return weights, grads, optimizer, 0.0
    # Offload: fp32 master, gradients and Adam states live in host memory (stage 3: weights too).
    cpu = (8 + fp32_extra) * trainable + (all_weights if stage == 3 else 0)
    if stage == 3:
        return gathered, gathered, 0.0, cpu
    return weights, 0.0, 0.0, cpu


def estimate(model_config: PretrainedConfig, shape: RunShape, num_gpus: int = 1) -> list[Row]:
    """One row per ZeRO setting: per-GPU memory of a training step of `shape` on `num_gpus` GPUs."""
    facts = model_facts(model_config, shape)
    activations = activation_bytes(model_config, shape, facts)
    rows = []
    for label, stage, offload in ZERO_SETTINGS:
        weights, grads, optimizer, cpu = _model_state_bytes(facts, shape, stage, offload, num_gpus)
        total = weights + grads + optimizer + activations
        gib = [x / GIB for x in (weights, grads, optimizer, activations, total, cpu)]
        rows.append(Row(label, *gib, fits_24gb=gib[4] + CUDA_OVERHEAD_GIB <= GPU_GIB))
    return rows


def format_table(rows: list[Row]) -> str:
    header = f"{'setting':<14}{'weights':>9}{'grads':>8}{'optim':>8}{'activ':>8}{'total':>8}{'cpu':>8}  fits 24GB"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.setting:<14}{r.weights_gib:>9.2f}{r.grads_gib:>8.2f}{r.optimizer_gib:>8.2f}"
            f"{r.activations_gib:>8.2f}{r.total_gib:>8.2f}{r.cpu_gib:>8.2f}  {'yes' if r.fits_24gb else 'no'}"
        )
    lines.append(
        f"GiB per GPU (cpu: host memory for offloaded states); fits adds {CUDA_OVERHEAD_GIB} GiB CUDA overhead"
    )
    return "\n".join(lines)


# --- from a model folder or a run config ----------------------------------------------------------


def config_from_folder(model_folder: str | Path) -> PretrainedConfig:
    """The model's config from a local folder. ChatGLM2's remote-code config becomes a native
    GlmConfig of the same shape (same parameter count; LoRA targets then q/v instead of its fused
    query_key_value)."""
    folder = Path(model_folder)
    raw = read_config_json(folder, "model.path")
    if raw.get("model_type") == "chatglm":
        glm = GlmConfig(
            hidden_size=raw["hidden_size"],
            num_hidden_layers=raw["num_layers"],
            num_attention_heads=raw["num_attention_heads"],
            num_key_value_heads=raw.get("multi_query_group_num", raw["num_attention_heads"]),
            head_dim=raw.get("kv_channels", raw["hidden_size"] // raw["num_attention_heads"]),
            intermediate_size=raw["ffn_hidden_size"],
            vocab_size=raw["padded_vocab_size"],
            pad_token_id=0,
        )
        glm._name_or_path = str(folder)  # what AutoConfig records: messages name the folder
        return glm
    return AutoConfig.from_pretrained(folder)


def estimate_from_folder(model_folder: str | Path, shape: RunShape, num_gpus: int = 1) -> list[Row]:
    return estimate(config_from_folder(model_folder), shape, num_gpus)


def cpu_peak_bytes(fn) -> int:
    """Peak bytes the CPU allocator holds while `fn()` runs, above what it held before.

    With `profile_memory=True` the CPU allocator reports each allocation, with its running total,
    to the profiler: exact bookkeeping (not RSS), so the number is the same on every run. Used to
    check the activation term on tiny models, and by benchmarks/gpu_llm_memory.py --tiny."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, nodes = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields))
    if not events:
        return 0
    first = min(events, key=lambda event: event[0])[1]  # the total before it is our zero
    return max(fields.total_allocated for _, fields in events) - (
        first.total_allocated - first.alloc_size
    )
