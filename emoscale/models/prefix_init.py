"""P-Tuning v2's starting prefix: the frozen model's own keys/values of real tokens (`ptuning.init`).

PEFT starts the prefix (`prompt_encoder.<adapter>.embedding.weight`, num_virtual_tokens x
(num_layers * 2 * kv_heads * head_dim)) at nn.Embedding's N(0, 1): keys without the structure
of real ones and values far from the model's per-layer scale (SmolLM2-135M: one head's value has
norm 0.3 in layer 0 and 3-12 later, a random one 8). Measured on SmolLM2 before any training
step (`benchmarks/ptuning_init_probe.py`), that prefix raised the SST-2 answer loss from 9.3 to
21.3 nats; P-Tuning v2 then stayed at chance (issue 14). Li & Liang (2021, "Initialization")
initialise the prefix with the activations of real words; here the model runs once over `tokens`
and its per-layer key/value cache becomes the prefix. The keys are cached after RoPE at positions 0..n-1 and the prompt's
positions start at n (`prompted_lm.py`), so the prefixed model's output on a prompt P is the
plain model's output on tokens + P: training starts from a model that reads real text first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peft import PeftModel
from peft.tuners.cartridge.utils import initialize_kv_prefix_from_past_key_values


def repeat_to_length(token_ids: list[int], length: int) -> list[int]:
    """`token_ids` repeated and cut to exactly `length` tokens."""
    if not token_ids:
        raise ValueError("no tokens to initialise the prefix from")
    return (token_ids * (length // len(token_ids) + 1))[:length]


@torch.no_grad()
def init_prefix_from_tokens(model: PeftModel, token_ids: list[int]) -> list[int]:
    """Set the active prefix-tuning adapter's prefix to the frozen base model's keys/values of
    `token_ids` (repeated/cut to num_virtual_tokens). Returns the tokens used."""
    config = model.active_peft_config
    tokens = repeat_to_length(token_ids, config.num_virtual_tokens)
    base = model.get_base_model()
    device = model.prompt_encoder[model.active_adapter].embedding.weight.device
    input_ids = torch.tensor([tokens], device=device)
    training = base.training
    base.eval()  # no dropout in the copied activations
    try:
        with gathered_under_zero3(base):
            output = base(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=True
            )
    finally:
        base.train(training)
    # transformers 5.24 renamed the output `past_key_values` to `cache`; reading the old name
    # there warns (issue 14: a user's log shows only emoscale's lines).
    cache = output.get("cache")
    if cache is None:
        cache = output.get("past_key_values")
    # PEFT's own packer: it knows the prefix layout (GQA's kv heads) and checks the shape.
    initialize_kv_prefix_from_past_key_values(model, past_key_values=cache)
    return tokens


@contextmanager
def gathered_under_zero3(model: torch.nn.Module) -> Iterator[None]:
    """Lets `model` run a forward pass while ZeRO-3 holds its weights partitioned (transformers
    loads them so under `accelerate launch` with ZeRO-3, before DeepSpeed's engine exists): each
    module's own weights are gathered for its forward only, so at most one layer is whole at a
    time. Every rank runs the same pass (gathering is collective). Otherwise: nothing."""
    if not any(hasattr(parameter, "ds_id") for parameter in model.parameters()):
        yield
        return
    import deepspeed

    gathered, hooks = {}, []

    def gather(module, _inputs):
        context = deepspeed.zero.GatheredParameters(list(module.parameters(recurse=False)))
        context.__enter__()
        gathered[module] = context

    def release(module, _inputs, _output):
        gathered.pop(module).__exit__(None, None, None)

    for module in model.modules():
        if next(module.parameters(recurse=False), None) is not None:
            hooks += [
                module.register_forward_pre_hook(gather),
                module.register_forward_hook(release),
            ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def prefix_norms(model: PeftModel) -> dict[str, list[float]]:
    """Mean L2 norm per layer of the prefix keys and values (one head's vector), for diagnosis."""
    config = model.active_peft_config
    weight = model.prompt_encoder[model.active_adapter].embedding.weight
    heads = config.num_attention_heads
    packed = weight.view(config.num_virtual_tokens, config.num_layers * 2, heads, -1)
    norms = packed.float().norm(dim=-1).mean(dim=(0, 2))  # [num_layers * 2]
    return {"keys": norms[0::2].tolist(), "values": norms[1::2].tolist()}
