"""The fusion family end to end through the one entry point: it learns what needs both modalities,
every ablation trains, bad audio is reported, EmoDB loads, and two processes shard the work."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile
from launching import launch_two_processes, succeeded

from emoscale import train
from emoscale.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_fusion_clearly_beats_audio_only_and_text_only(fusion_overrides, tmp_path):
    accuracy = {}
    for modalities in ("both", "audio", "text"):
        overrides = fusion_overrides + [
            f"model.modalities={modalities}",
            f"output_dir={tmp_path / modalities}",
        ]
        _, metrics = train.run(load_config(overrides=overrides))
        accuracy[modalities] = metrics["test"]["accuracy"]
    # The label is the (tone, weather) pair: one modality can tell at most 2 of the 4 apart.
    assert accuracy["both"] >= 0.9, accuracy
    assert accuracy["audio"] <= 0.7 and accuracy["text"] <= 0.7, accuracy
    assert accuracy["both"] - max(accuracy["audio"], accuracy["text"]) >= 0.25, accuracy


VARIANTS = {
    "audio_frozen_wavlm": ["model.modalities=audio", "model.audio_method=frozen"],
    "text_only": ["model.modalities=text"],
    "both_lambda0_lora_wavlm": ["fusion.mine_weight=0"],
    "both_lambda025_lora_hubert_weighted": [
        "fusion.mine_weight=0.25",
        "model.audio_layers=weighted",
    ],
    "both_lambda025_frozen_wavlm": ["model.audio_method=frozen"],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_trains_through_the_entry_point(variant, fusion_overrides, tiny_hubert):
    overrides = fusion_overrides + VARIANTS[variant] + ["train.max_steps=3"]
    if "hubert" in variant:
        overrides.append(f"model.audio_path={tiny_hubert}")
    run_dir, metrics = train.run(load_config(overrides=overrides))
    assert metrics["test"]["num_examples"] == 48
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert any("dev" in record for record in history)
    counts = json.loads((run_dir / "run.json").read_text())["trainable_parameters"]
    # the text encoder is not part of the model (its features are cached); a speech encoder is
    assert 0 < counts["trainable"] <= counts["total"]
    assert (counts["trainable"] < counts["total"]) == ("text_only" not in variant)
    assert (run_dir / "model/model.safetensors").is_file()
    lora = "frozen" not in variant and "text" not in variant
    assert (run_dir / "model/speech_adapter/adapter_model.safetensors").is_file() == lora
    for record in (json.loads(line) for line in (run_dir / "predictions.jsonl").open()):
        assert all(math.isfinite(score) for score in record["scores"].values())


@pytest.fixture
def corpus_with_a_missing_clip(tone_corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(tone_corpus, copy)
    (copy / "wav/train-0003.wav").unlink()
    return copy


def test_bad_audio_stops_with_one_line_or_is_skipped_and_reported(
    fusion_overrides, corpus_with_a_missing_clip, tmp_path, capsys
):
    overrides = fusion_overrides + [f"data.path={corpus_with_a_missing_clip}", "train.max_steps=2"]
    assert train.main(overrides) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: {corpus_with_a_missing_clip}/wav/train-0003.wav: audio file not found"
    assert not (tmp_path / "run").exists()  # stopped before any model loaded or folder was made

    run_dir, metrics = train.run(load_config(overrides=overrides + ["data.skip_bad_audio=true"]))
    data = json.loads((run_dir / "run.json").read_text())["data"]
    assert data["dropped"] == {"audio: audio file not found": 1}
    assert data["examples"]["train"] == 159


@pytest.fixture
def emodb_folder(tmp_path):
    """EmoDB's layout (wav/SSTTTEV.wav) with synthetic 0.5 s clips: 10 speakers x 3 emotions."""
    folder = tmp_path / "emodb" / "wav"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for speaker in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16"):
        for code, letter, pitch in (("a01", "W", 880), ("a02", "T", 220), ("b01", "N", 440)):
            t = np.arange(8000) / 16_000
            wave = 0.5 * np.sin(2 * np.pi * pitch * t) + rng.normal(0, 0.05, t.shape)
            soundfile.write(
                folder / f"{speaker}{code}{letter}a.wav", wave.astype(np.float32), 16_000
            )
    return folder.parent


def test_trains_on_emodb(fusion_overrides, emodb_folder):
    overrides = fusion_overrides + [
        "data.dataset=emodb",
        f"data.path={emodb_folder}",
        "data.labels=null",
        "train.max_steps=2",
        "train.batch_size=8",
    ]
    run_dir, metrics = train.run(load_config(overrides=overrides))
    assert metrics["test"]["num_examples"] == 3  # speaker 03 is fold 0's test speaker
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").open()]
    assert {p["id"][:2] for p in predictions if p["split"] == "test"} == {"03"}


@pytest.mark.multiprocess
def test_two_processes_through_accelerate_launch(fusion_overrides, tmp_path):
    assert succeeded(launch_two_processes([*fusion_overrides, "train.max_steps=3"]))
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "run.json").read_text())["num_processes"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dev"]["num_examples"] == metrics["test"]["num_examples"] == 48
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").open()]
    assert len({(p["split"], p["id"]) for p in predictions}) == len(predictions) == 96


def test_a_resumed_run_ends_where_an_uninterrupted_one_ends(fusion_overrides):
    overrides = fusion_overrides + [
        "data.max_seconds=0.5",  # random crops: they must continue, not restart, after a resume
        "train.max_steps=6",
        "eval.every_steps=3",
        "train.keep_checkpoints=5",
        "train.log_every_steps=1",
    ]
    run_dir, first = train.run(load_config(overrides=overrides))
    first_losses = (run_dir / "history.jsonl").read_text()
    (run_dir / "checkpoints" / "latest").write_text("step-00000003")  # roll back to step 3
    _, resumed = train.run(load_config(overrides=overrides), resume=True)
    assert resumed["test"]["accuracy"] == first["test"]["accuracy"]
    assert resumed["dev"]["macro_f1"] == pytest.approx(first["dev"]["macro_f1"], abs=1e-9)
    losses = [json.loads(line) for line in first_losses.splitlines()]
    again = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    for key in ("train_loss", "cross_entropy", "mine_mi"):
        assert [r.get(key) for r in again] == pytest.approx([r.get(key) for r in losses], abs=1e-6)
    # The loss's parts are logged beside it: loss = CE - lambda * MI (lambda 0.25 by default).
    train_records = [r for r in again if "train_loss" in r]
    assert len(train_records) == 6
    for record in train_records:
        expected = record["cross_entropy"] - 0.25 * record["mine_mi"]
        assert record["train_loss"] == pytest.approx(expected, abs=1e-5)


def test_full_audio_method_trains_every_encoder_weight(fusion_overrides):
    """`model.audio_method=full`: a speech encoder trained whole (e.g. from scratch), no adapter."""
    from emoscale import train
    from emoscale.config import load_config

    overrides = fusion_overrides + [
        "model.modalities=audio",
        "model.audio_method=full",
        "train.max_steps=3",
    ]
    run_dir, _ = train.run(load_config(overrides=overrides))
    counts = json.loads((run_dir / "run.json").read_text())["trainable_parameters"]
    assert counts["trainable"] == counts["total"]
    assert not (run_dir / "model" / "speech_adapter").exists()


@pytest.mark.parametrize("select", ["best", "last"])
def test_eval_select_tests_the_best_dev_checkpoint_or_the_last_model(
    select, fusion_overrides, tmp_path
):
    from safetensors.torch import load_file

    overrides = fusion_overrides + [
        "model.modalities=audio", "train.max_steps=6", "eval.every_steps=2",
        f"eval.select={select}", f"output_dir={tmp_path / select}",
    ]  # fmt: skip
    run_dir, _ = train.run(load_config(overrides=overrides))
    best = json.loads((run_dir / "checkpoints/step-00000006/progress.json").read_text())[
        "best_checkpoint"
    ]
    saved = load_file(str(run_dir / "model/model.safetensors"))

    def same_as(checkpoint: str) -> bool:
        tensors = load_file(str(run_dir / "checkpoints" / checkpoint / "model.safetensors"))
        common = [key for key in saved if key in tensors]
        assert len(common) == len(saved)  # every saved tensor is a trained one
        return all(bool((tensors[key] == saved[key]).all()) for key in common)

    assert same_as(best if select == "best" else "step-00000006")
    if best != "step-00000006":  # the two choices differ: the other one was not taken
        assert not same_as("step-00000006" if select == "best" else best)
