"""A clip's pooled vector must not depend on what it is batched with (issue 15, item 1).

wav2vec2-base, HuBERT-base and WavLM-base-plus normalise their first convolution with GroupNorm over
time; the tiny test encoders use LayerNorm and cannot show the defect. These encoders keep the base
models' front end (7 convolutions, 512 channels, GroupNorm) under a small transformer, and are built
through the family exactly as a run builds them, with the feature extractor asking for an attention
mask or not (HuBERT-base's says no).
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2FeatureExtractor,
    WavLMConfig,
    WavLMModel,
)

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.models import build_family
from emoscale.models.pooling import AttentiveStatsPooling
from emoscale.models.speech_encoder import SpeechEncoder, use_projection_modules

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ARCHITECTURES = {"wavlm": (WavLMConfig, WavLMModel), "hubert": (HubertConfig, HubertModel)}


def base_front_end_config(arch: str):
    config_class, _ = ARCHITECTURES[arch]
    # the default conv stack is the base models' (GroupNorm); a 2-layer, 128-wide transformer on top
    config = config_class(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256
    )
    assert config.feat_extract_norm == "group" and config.conv_dim[0] == 512
    return config


@pytest.fixture(scope="module")
def group_norm_folders(tmp_path_factory):
    folders = {}
    for arch, (_, model_class) in ARCHITECTURES.items():
        torch.manual_seed(0)
        model = model_class(base_front_end_config(arch))
        for asks_for_mask in (True, False):
            folder = tmp_path_factory.mktemp(f"{arch}-mask-{asks_for_mask}")
            model.save_pretrained(folder)
            Wav2Vec2FeatureExtractor(
                sampling_rate=16_000, do_normalize=True, return_attention_mask=asks_for_mask
            ).save_pretrained(folder)
            folders[arch, asks_for_mask] = folder
    return folders


def alone_and_batched(speech: SpeechEncoder, pool: AttentiveStatsPooling) -> tuple:
    """f_a of a 1 s clip alone, and in a batch padded to 2 s beside a 2 s clip."""
    generator = torch.Generator().manual_seed(1)
    clip, other = torch.randn(16_000, generator=generator), torch.randn(32_000, generator=generator)
    values, mask = torch.zeros(2, 32_000), torch.zeros(2, 32_000, dtype=torch.long)
    values[0, :16_000], mask[0, :16_000] = clip, 1
    values[1], mask[1] = other, 1
    with torch.no_grad():
        alone = pool(*speech(clip[None], torch.ones(1, 16_000, dtype=torch.long)))[0]
        batched = pool(*speech(values, mask))[0]
    return alone, batched


def relative_change(alone: torch.Tensor, batched: torch.Tensor) -> float:
    return float((batched - alone).norm() / alone.norm())


@pytest.mark.parametrize("asks_for_mask", [True, False], ids=["extractor-mask", "no-mask"])
@pytest.mark.parametrize("arch", ["wavlm", "hubert"])
def test_group_norm_encoders_give_a_clip_the_same_vector_in_any_batch(
    arch, asks_for_mask, group_norm_folders, fusion_overrides
):
    folder = group_norm_folders[arch, asks_for_mask]
    config = load_config(
        overrides=fusion_overrides + [f"model.audio_path={folder}", "model.modalities=audio"]
    )
    model = build_family(config, load_corpus(config.data)).build_model().eval()
    assert model.speech.per_clip  # GroupNorm found: the front end runs per clip
    alone, batched = alone_and_batched(model.speech, model.audio_pool)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["wavlm", "hubert"])
def test_without_the_fix_the_same_encoders_depend_on_the_batch(arch):
    """The defect the test above guards against is real on these encoders: batched front end."""
    torch.manual_seed(0)
    encoder = ARCHITECTURES[arch][1](base_front_end_config(arch))
    use_projection_modules(encoder)
    speech = SpeechEncoder(encoder, "last", frozen=True, per_clip_front_end=False).eval()
    pool = AttentiveStatsPooling(speech.hidden_size, 64).eval()
    assert relative_change(*alone_and_batched(speech, pool)) > 0.01


def test_layer_norm_front_ends_stay_batched_and_independent(tiny_wavlm, fusion_overrides):
    config = load_config(overrides=fusion_overrides + ["model.modalities=audio"])
    model = build_family(config, load_corpus(config.data)).build_model().eval()
    assert not model.speech.per_clip  # nothing to fix: each frame is normalised on its own
    alone, batched = alone_and_batched(model.speech, model.audio_pool)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_per_clip_front_end_trains_like_the_batched_one_on_equal_lengths(group_norm_folders):
    """Equal lengths take the batched path (one call), so gradients reach the front end as before."""
    encoder = WavLMModel.from_pretrained(group_norm_folders["wavlm", True])
    speech = SpeechEncoder(encoder, "last", frozen=False).train()
    values = torch.randn(2, 8_000)
    mask = torch.ones(2, 8_000, dtype=torch.long)
    mask[1, 6_000:] = 0  # and one padded clip: its own call
    features, frame_mask = speech(values, mask)
    (features * frame_mask[..., None]).sum().backward()
    first_conv = speech.encoder.feature_extractor.conv_layers[0].conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_equal_length_batch_takes_one_batched_call_with_the_same_result(group_norm_folders):
    """No padding, nothing to fix: the per-clip front end gives exactly the batched features (the
    step-time cost of the fix is then zero; benchmarks/bench_batch_independence.py)."""
    folder = group_norm_folders["wavlm", True]
    values = torch.randn(3, 8_000, generator=torch.Generator().manual_seed(4))
    mask = torch.ones(3, 8_000, dtype=torch.long)
    outputs, calls = {}, {}
    for per_clip in (True, False):
        speech = SpeechEncoder(WavLMModel.from_pretrained(folder), "last", frozen=True,
                               per_clip_front_end=per_clip).eval()  # fmt: skip
        front_end = speech.encoder.feature_extractor
        inner = front_end.batched_forward if per_clip else front_end.forward
        calls[per_clip] = []

        def counted(x, inner=inner, seen=calls[per_clip]):
            seen.append(x.shape[0])
            return inner(x)

        if per_clip:
            front_end.batched_forward = counted
        else:
            front_end.forward = counted
        with torch.no_grad():
            outputs[per_clip] = speech(values, mask)[0]
    assert calls == {True: [3], False: [3]}  # one call on the whole batch, on both paths
    assert torch.equal(outputs[True], outputs[False])
