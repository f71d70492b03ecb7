"""The fusion family's parts that the trainer relies on: parameters, batches, workers, saving."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import WavLMConfig, WavLMModel

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.models import build_family

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_for(fusion_overrides, *extra):
    config = load_config(overrides=fusion_overrides + list(extra))
    corpus = load_corpus(config.data)
    return build_family(config, corpus), corpus


def test_paper_lora_on_a_base_wavlm_trains_73728_parameters():
    with torch.device("meta"):  # the 95M-parameter base model, without allocating it
        encoder = WavLMModel(WavLMConfig())
    config = load_config(overrides=[])
    lora = config.fusion  # the defaults are the paper's: r=2, alpha=16, dropout 0.1, q and v
    model = get_peft_model(
        encoder,
        LoraConfig(
            r=lora.lora_r,
            lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout,
            target_modules=lora.lora_target_modules,
        ),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 12 * 2 * (768 * 2 + 2 * 768) == 73_728  # "about 74K" in the paper


def test_lora_and_frozen_encoders_train_what_they_should(fusion_overrides):
    family, _ = family_for(fusion_overrides)
    model = family.build_model()
    speech = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("speech.")}
    assert speech and all("lora_" in name for name in speech)
    assert sum(p.numel() for n, p in model.named_parameters() if n in speech) == 2 * 2 * (32 * 4)

    family, _ = family_for(
        fusion_overrides, "model.audio_method=frozen", "model.audio_layers=weighted"
    )
    model = family.build_model().train()
    trainable = [
        n for n, p in model.named_parameters() if p.requires_grad and n.startswith("speech.")
    ]
    assert trainable == ["speech.layer_weights"]  # 3 weights: CNN projection + 2 layers
    assert model.speech.layer_weights.numel() == 3
    assert not model.speech.encoder.training  # frozen: no dropout, no SpecAugment


def test_batches_carry_masks_and_a_clip_scores_the_same_alone_or_padded(fusion_overrides):
    family, corpus = family_for(fusion_overrides, "fusion.mine_weight=0")
    examples = corpus.split("dev")[:6]
    model = family.build_model().eval()
    batch = next(iter(family.dataloader(examples, train=False, seed=0, split="dev")))
    assert batch["input_values"].shape == batch["audio_mask"].shape
    assert batch["text_features"].shape[:2] == batch["text_mask"].shape
    assert sorted(batch["example_index"].tolist()) == list(range(6))
    lengths = batch["audio_mask"].sum(1)
    assert lengths.min() < lengths.max()  # clips of different lengths, padded
    _, batch_scores = family.predict(model, batch)
    shortest = int(lengths.argmin())
    alone = family.dataloader([examples[batch["example_index"][shortest]]], False, 0, "dev")
    _, alone_scores = family.predict(model, next(iter(alone)))
    torch.testing.assert_close(batch_scores[shortest], alone_scores[0], atol=1e-4, rtol=1e-4)


def test_workers_decode_exactly_what_the_main_process_would(fusion_overrides):
    family, corpus = family_for(fusion_overrides, "data.max_seconds=0.5")  # random crops in train
    examples = corpus.split("train")[:24]
    batches = {}
    for workers in (0, 2):
        family.config.train.num_workers = workers
        loader = family.dataloader(examples, train=True, seed=3, split="train")
        loader.batch_sampler.set_epoch(1)
        batches[workers] = list(loader)
    for main, worker in zip(batches[0], batches[2], strict=True):
        torch.testing.assert_close(main["input_values"], worker["input_values"])
        assert torch.equal(main["example_index"], worker["example_index"])


def test_save_model_writes_the_trained_tensors_and_a_peft_adapter(fusion_overrides, tmp_path):
    family, _ = family_for(fusion_overrides)
    model = family.build_model()
    family.save_model(model, tmp_path / "model")
    saved = load_file(tmp_path / "model" / "model.safetensors")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained <= set(saved) and "mine.log_ema" in saved
    assert not any(name.startswith("speech.") and "lora_" not in name for name in saved)
    adapter = json.loads((tmp_path / "model/speech_adapter/adapter_config.json").read_text())
    assert adapter["r"] == 2 and sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert json.loads((tmp_path / "model/labels.json").read_text()) == list(family.label_names)


def test_loss_is_cross_entropy_minus_lambda_times_the_mine_bound(fusion_overrides):
    family, corpus = family_for(fusion_overrides, "fusion.mine_weight=0.5")
    model = family.build_model().train()
    batch = next(iter(family.dataloader(corpus.split("train")[:16], True, 0, "train")))
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "example_index")}
    set_seed(7)
    logits, mutual_information = model(**inputs)
    set_seed(7)  # the same dropout, SpecAugment masks (numpy) and shuffled pairs
    loss = family.loss(model, batch)
    expected = F.cross_entropy(logits, batch["labels"]) - 0.5 * mutual_information
    torch.testing.assert_close(loss, expected)
    loss.backward()  # the bound trains the statistics network and, through f_a and f_t, the rest
    assert model.mine.statistics[0].weight.grad.abs().sum() > 0
    assert model.text_pool.conv.weight.grad.abs().sum() > 0
    model.eval()
    assert model(**inputs)[1] is None  # no MINE term outside training


def test_a_batch_of_one_leaves_mine_out_and_counts_it(fusion_overrides):
    """Issue 15: one clip has no marginal pair; its bound would be exactly 0 (and the moving average
    would still move MINE), so the term is left out and counted, not added as a silent zero."""
    family, corpus = family_for(fusion_overrides, "fusion.mine_weight=0.5")
    model = family.build_model().train()
    batch = next(iter(family.dataloader(corpus.split("train")[:1], True, 0, "train")))
    assert batch["labels"].numel() == 1
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "example_index")}
    set_seed(7)
    logits, _ = model(**inputs)
    set_seed(7)
    terms = {}
    loss = family.loss(model, batch, terms)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["labels"]))
    assert float(terms["mine_skipped"]) == 1.0
    loss.backward()
    assert model.mine.statistics[0].weight.grad.abs().sum() == 0  # in the graph, no gradient
    assert torch.isinf(model.mine.log_ema)  # the moving average saw nothing


@pytest.mark.parametrize(
    "method, augmentation, expected",
    [
        ("lora", "when_trained", True),
        ("frozen", "when_trained", False),
        ("frozen", "always", True),
        ("lora", "never", False),
    ],
)
def test_encoder_augmentation_key_sets_the_encoders_train_mode(
    fusion_overrides, method, augmentation, expected
):
    family, _ = family_for(
        fusion_overrides,
        f"model.audio_method={method}",
        f"fusion.encoder_augmentation={augmentation}",
    )
    model = family.build_model().train()
    assert model.speech.encoder.training is expected  # dropout and SpecAugment on or off
    assert model.classifier.training  # the heads train either way


def test_eval_crop_false_reads_whole_clips_in_evaluation(fusion_overrides):
    family, corpus = family_for(fusion_overrides, "data.max_seconds=0.5", "data.eval_crop=false")
    examples = corpus.split("dev")[:4]
    evaluation = next(iter(family.dataloader(examples, train=False, seed=0, split="dev")))
    training = next(iter(family.dataloader(examples, train=True, seed=0, split="train")))
    assert evaluation["audio_mask"].sum(1).max() > 8_000  # clips of 0.4-0.8 s kept whole
    assert training["audio_mask"].sum(1).max() == 8_000  # training still crops to 0.5 s


@pytest.mark.parametrize("pooling, attentive", [("attentive", True), ("mean_std", False)])
def test_pooling_key_chooses_the_pooling_of_both_branches(fusion_overrides, pooling, attentive):
    family, _ = family_for(fusion_overrides, f"fusion.pooling={pooling}")
    model = family.build_model()
    for pool in (model.audio_pool, model.text_pool):
        assert (pool.attention is not None) is attentive


def test_unknown_pooling_is_one_line_naming_the_choices(fusion_overrides):
    from emoscale.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        load_config(overrides=[*fusion_overrides, "fusion.pooling=max"])
    assert str(error.value) == (
        "config key 'fusion.pooling': Input should be 'attentive' or 'mean_std' (got 'max')"
    )


def test_minimal_head_keys_give_statistics_of_the_frames_and_one_linear_layer(fusion_overrides):
    """fusion.pooling_layers=false, fusion.classifier_layers=1 (issue 15): the plain baseline's
    head, [mean, std] of the encoder's frames into one linear layer; audio only."""
    keys = [
        "model.modalities=audio",
        "fusion.pooling=mean_std",
        "fusion.pooling_layers=false",
        "fusion.classifier_layers=1",
    ]
    family, corpus = family_for(fusion_overrides, *keys)
    model = family.build_model()
    width = model.speech.hidden_size
    assert [type(layer).__name__ for layer in model.classifier] == ["Dropout", "Linear"]
    assert model.classifier[1].in_features == 2 * width
    assert not [name for name, _ in model.named_parameters() if name.startswith("audio_pool.")]
    batch = next(iter(family.dataloader(corpus.split("dev")[:3], train=False, seed=0)))
    model.eval()
    with torch.no_grad():
        logits, _ = model(batch["input_values"], batch["audio_mask"])
        features, frames = model.speech(batch["input_values"], batch["audio_mask"])
    row = 0
    real = features[row, frames[row]]
    pooled = torch.cat([real.mean(0), real.std(0, unbiased=False)])
    torch.testing.assert_close(logits[row], model.classifier(pooled), rtol=1e-4, atol=1e-4)


def test_fusion_of_both_modalities_needs_the_pooling_layers(fusion_overrides):
    from emoscale.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        load_config(overrides=[*fusion_overrides, "fusion.pooling_layers=false"])
    assert str(error.value) == (
        "config key 'fusion.pooling_layers': false leaves f_a and f_t at their encoders' widths, "
        "which AT-Fusion cannot combine; with model.modalities=both keep it true"
    )
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[*fusion_overrides, "fusion.classifier_layers=3"])
    assert str(error.value) == (
        "config key 'fusion.classifier_layers': Input should be 1 or 2 (got 3)"
    )


def test_decoded_clips_are_kept_only_where_they_are_read_again(fusion_overrides):
    """The main process keeps decoded clips; DataLoader workers, which the trainer starts anew
    each epoch, would keep them for one epoch only: their reader keeps nothing."""
    main, _ = family_for(fusion_overrides)
    assert main.reader.cache_budget == 512 * 2**20
    workers, _ = family_for(fusion_overrides, "train.num_workers=2")
    assert workers.reader.cache_budget == 0
