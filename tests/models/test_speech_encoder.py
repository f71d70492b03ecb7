"""The speech encoder: LoRA must reach WavLM's attention, and the rerouted attention is WavLM's own."""

from __future__ import annotations

import pytest
import torch
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.models import build_family
from emoscale.models.speech_encoder import attention_through_projections

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rerouted_attention_computes_what_transformers_computes():
    torch.manual_seed(0)
    attention = WavLMAttention(
        embed_dim=32,
        num_heads=4,
        num_buckets=320,
        max_distance=800,
        has_relative_position_bias=True,
    ).eval()
    for parameter in attention.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    hidden, bias = torch.randn(2, 9, 32), torch.randn(2 * 4, 9, 9)
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    expected, expected_weights = attention.torch_multi_head_self_attention(hidden, mask, bias)
    output, weights = attention_through_projections(attention, hidden, mask, bias)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(weights.mean(1), expected_weights.mean(1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["wavlm", "hubert"])
def test_every_lora_weight_is_in_the_graph(arch, fusion_overrides, tiny_hubert, tiny_wavlm):
    """Transformers' WavLM attention bypasses q_proj/v_proj; without the rerouting, PEFT's LoRA
    there would get no gradient at all (and DDP would stop)."""
    path = {"wavlm": tiny_wavlm, "hubert": tiny_hubert}[arch]
    config = load_config(overrides=fusion_overrides + [f"model.audio_path={path}"])
    family = build_family(config, load_corpus(config.data))
    model = family.build_model()
    examples = load_corpus(config.data).split("train")[:8]
    batch = next(iter(family.dataloader(examples, train=True, seed=0, split="train")))
    family.loss(model, batch).backward()
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(lora) == 8  # 2 layers x (q, v) x (A, B)
    assert all(p.grad is not None for p in lora.values())
    # B starts at zero, so A's first gradient is zero; B's is not
    assert all(p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)


def test_tiny_encoder_front_end_options(tmp_path):
    """emoscale.tiny's GroupNorm variant (the base models' front end, benchmarks/emodb_*) gets the
    per-clip front end; normalize_waveform reaches the extractor; a wrong norm is refused."""
    from transformers import AutoFeatureExtractor, AutoModel

    from emoscale.models.speech_encoder import SpeechEncoder
    from emoscale.tiny.encoders import make_tiny_speech_encoder

    group = make_tiny_speech_encoder(tmp_path / "group", front_end_norm="group")
    raw = make_tiny_speech_encoder(tmp_path / "raw", normalize_waveform=False)
    assert SpeechEncoder(AutoModel.from_pretrained(group), "last", frozen=False).per_clip
    assert not SpeechEncoder(AutoModel.from_pretrained(raw), "last", frozen=False).per_clip
    assert AutoFeatureExtractor.from_pretrained(group).do_normalize
    assert not AutoFeatureExtractor.from_pretrained(raw).do_normalize
    with pytest.raises(ValueError, match="front_end_norm must be 'layer' or 'group', not 'batch'"):
        make_tiny_speech_encoder(tmp_path / "bad", front_end_norm="batch")
    assert not (tmp_path / "bad").exists()
