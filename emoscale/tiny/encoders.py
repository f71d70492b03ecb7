"""Tiny random-weight encoders for the fusion family's tests and demo, offline.

    make_tiny_speech_encoder("runs/tiny-wavlm", arch="wavlm")     # WavLM / HuBERT / wav2vec2
    make_tiny_text_encoder("runs/tiny-roberta", texts)             # RoBERTa + a locally trained BPE

Each folder is a normal Hugging Face model folder: AutoModel, AutoFeatureExtractor and AutoTokenizer
load it like a downloaded wavlm-base-plus or roberta-base. The speech models keep the real
front end's total stride (320 samples: 50 frames a second at 16 kHz) with narrower convolutions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import processors
from transformers import (
    HubertConfig,
    HubertModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from emoscale.output_folder import new_folder, refuse_existing
from emoscale.tiny.lm import byte_level_bpe

SPEECH_ARCHITECTURES = {
    "wavlm": (WavLMConfig, WavLMModel),
    "hubert": (HubertConfig, HubertModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
}
ROBERTA_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # roberta-base's ids 0..4


def make_tiny_speech_encoder(
    out: str | Path,
    arch: str = "wavlm",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    sampling_rate: int = 16_000,
    seed: int = 0,
    front_end_norm: str = "layer",
    normalize_waveform: bool = True,
) -> Path:
    """Save a small random speech encoder plus its feature extractor (preprocessor_config.json)
    to `out`, which must not hold files.

    `front_end_norm`: "layer" (a LayerNorm over channels after every convolution, as in the large
    models) or "group" (GroupNorm over time after the first one only, as in wav2vec2/HuBERT/
    WavLM-base; SpeechEncoder runs it per clip, so padding cannot change a clip's features).
    `normalize_waveform`: the extractor's do_normalize (each clip scaled to zero mean, unit variance).
    """
    if front_end_norm not in ("layer", "group"):
        raise ValueError(f"front_end_norm must be 'layer' or 'group', not {front_end_norm!r}")
    refuse_existing(Path(out), "tiny speech encoder:")
    if arch not in SPEECH_ARCHITECTURES:
        raise ValueError(
            f"unknown speech architecture {arch!r}; known: {', '.join(SPEECH_ARCHITECTURES)}"
        )
    config_class, model_class = SPEECH_ARCHITECTURES[arch]
    config = config_class(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        conv_dim=(32, 32, 32, 32),
        conv_kernel=(10, 8, 4, 4),
        conv_stride=(5, 4, 4, 4),  # 5*4*4*4 = 320, as in the base models
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        # Layer norm per frame by default (as in the large models); "group" is the base models'.
        feat_extract_norm=front_end_norm,
        conv_bias=True,
        mask_time_length=2,  # SpecAugment spans in proportion to clips of a second, not ten
    )
    torch.manual_seed(seed)
    model = model_class(config)
    # WavLM/HuBERT/wav2vec2-base ship do_normalize=False/True differently; True is the safer tiny default.
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sampling_rate,
        padding_value=0.0,
        do_normalize=normalize_waveform,
        return_attention_mask=True,
    )
    with new_folder(Path(out), "tiny speech encoder:") as work:
        model.save_pretrained(work)
        extractor.save_pretrained(work)
    return Path(out)


def train_roberta_tokenizer(texts: Iterable[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with RoBERTa's special tokens and `<s> text </s>` framing."""
    tokenizer = byte_level_bpe(texts, vocab_size, ROBERTA_SPECIAL_TOKENS)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=512,
    )


def make_tiny_text_encoder(
    out: str | Path,
    texts: Iterable[str],
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 500,
    seed: int = 0,
) -> Path:
    """Save a small random RoBERTa encoder plus a tokenizer trained on `texts` to `out`, which
    must not hold files."""
    refuse_existing(Path(out), "tiny text encoder:")
    tokenizer = train_roberta_tokenizer(texts, vocab_size)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=514,  # 512 tokens + RoBERTa's position offset (pad id + 1)
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = RobertaModel(config)
    with new_folder(Path(out), "tiny text encoder:") as work:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
    return Path(out)
