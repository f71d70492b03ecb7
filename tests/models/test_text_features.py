"""The frozen text encoder's features: computed once, reused across epochs and runs, invalidated
by a changed text or model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.models import build_family
from emoscale.models.text_features import TextFeatureCache
from emoscale.tiny.encoders import make_tiny_text_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TEXTS = ["it was sunny and warm", "so rainy and cold", "a grey rainy day", "it was sunny and warm"]


def text_only_family(fusion_overrides, cache):
    config = load_config(
        overrides=fusion_overrides + ["model.modalities=text", f"fusion.text_cache_dir={cache}"]
    )
    corpus = load_corpus(config.data)
    return build_family(config, corpus), corpus


def test_no_encoder_pass_after_the_first_epoch_or_in_a_later_run(fusion_overrides, tmp_path):
    family, corpus = text_only_family(fusion_overrides, tmp_path / "cache")
    loader = family.dataloader(corpus.split("train"), train=True, seed=0, split="train")
    distinct = len({example.text for example in corpus.split("train")})
    assert family.text_cache.encoded_texts == distinct  # each distinct text encoded once
    first_epoch_passes = family.text_cache.forward_passes
    assert first_epoch_passes == -(-distinct // family.text_cache.batch_size)
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        batches = list(loader)
        assert sum(len(batch["labels"]) for batch in batches) == len(corpus.split("train"))
        assert family.text_cache.forward_passes == first_epoch_passes  # epochs only read files
    for split in ("dev", "test"):  # as the trainer does: every split's loader once
        family.dataloader(corpus.split(split), train=False, seed=0, split=split)

    later_run, corpus = text_only_family(fusion_overrides, tmp_path / "cache")
    for split in ("train", "dev", "test"):
        later_run.dataloader(corpus.split(split), train=split == "train", seed=1, split=split)
    assert later_run.text_cache.forward_passes == 0  # every split of the second run was cached


def test_a_changed_text_or_model_misses(tiny_roberta, tmp_path):
    cache = TextFeatureCache(tiny_roberta, max_length=64, root=tmp_path)
    first = cache.ensure(TEXTS)
    assert cache.encoded_texts == 3 and first[0] == first[3]  # duplicates share one file

    again = TextFeatureCache(tiny_roberta, max_length=64, root=tmp_path)
    assert again.ensure(TEXTS) == first and again.forward_passes == 0
    again.ensure(TEXTS[:2] + ["it was sunny and warm!"])
    assert again.encoded_texts == 1  # only the edited text

    retrained = tmp_path / "roberta_v2"
    make_tiny_text_encoder(retrained, ["it was sunny and warm", "so rainy and cold"] * 20, seed=1)
    other_model = TextFeatureCache(retrained, max_length=64, root=tmp_path)
    other_model.ensure(TEXTS)
    assert other_model.encoded_texts == 3  # new weights: a new key, nothing reused
    assert other_model.folder != cache.folder
    shorter = TextFeatureCache(tiny_roberta, max_length=8, root=tmp_path)
    assert shorter.folder != cache.folder  # the truncation length is part of the key


def test_cached_features_are_the_encoders_output_for_the_text_alone(tiny_roberta, tmp_path):
    cache = TextFeatureCache(tiny_roberta, max_length=64, root=tmp_path, batch_size=4)
    paths = cache.ensure(["a grey rainy day", "it was sunny and warm today, so warm and bright"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    encoder = AutoModel.from_pretrained(tiny_roberta).eval()
    with torch.no_grad():
        alone = encoder(**tokenizer("a grey rainy day", return_tensors="pt")).last_hidden_state[0]
    stored = TextFeatureCache.load(paths[0])  # computed in a padded batch, stored unpadded
    assert stored.shape == alone.shape
    torch.testing.assert_close(stored, alone, atol=1e-5, rtol=1e-4)


def test_truncation_is_recorded(tiny_roberta, tmp_path):
    cache = TextFeatureCache(tiny_roberta, max_length=6, root=tmp_path)
    short, long = cache.ensure(["so cold", "it was sunny and warm and bright and warm again"])
    assert not TextFeatureCache.truncated(short)
    assert TextFeatureCache.truncated(long)
    assert TextFeatureCache.load(long).shape[0] == 6
