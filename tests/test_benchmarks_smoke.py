"""benchmarks/bench_*.py run end to end in --quick mode and write their JSON. A smoke test: no
timing is asserted (the machine may be busy), only what must hold whatever the timings are.

The benchmarks read SST-5 and MELD in their official layouts; these tests write tiny copies of
both (sentences of emoscale/tiny/demo.py), never the real corpora.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from emoscale.data.meld import EMOTIONS
from emoscale.tiny import demo

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SST5_LABELS = {"negative": (0, 1), "neutral": (2,), "positive": (3, 4)}  # demo label -> SST-5
MELD_HEADER = [
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
]  # fmt: skip
SIZES = {"train": 120, "dev": 20, "test": 40}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """data/sst/stsa.fine.{train,dev,test} and data/meld/{split}_sent_emo.csv."""
    root = tmp_path_factory.mktemp("bench_data")
    (root / "sst").mkdir()
    (root / "meld").mkdir()
    for offset, (split, count) in enumerate(SIZES.items()):
        rows = demo.sentences(count, seed=offset)
        lines = [
            f"{SST5_LABELS[label][i % len(SST5_LABELS[label])]} {text.lower()}"
            for i, (text, label) in enumerate(rows)
        ]
        (root / "sst" / f"stsa.fine.{split}").write_text("\n".join(lines) + "\n")
        binary = [f"{int(label == 'positive')} {text.lower()}" for text, label in rows]
        (root / "sst" / f"stsa.binary.{split}").write_text("\n".join(binary) + "\n")
        with open(root / "meld" / f"{split}_sent_emo.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(MELD_HEADER)
            for i, (text, label) in enumerate(rows):
                emotion = EMOTIONS[i % len(EMOTIONS)]
                writer.writerow(
                    [i + 1, text, "Joey", emotion, label, i // 5, i % 5, 1, 1, "0:0:1,0", "0:0:2,0"]
                )
    return root


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, corpora: Path, tmp_path: Path, monkeypatch, *extra: str) -> dict:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling common.py
    threads = torch.get_num_threads()  # the benchmarks pin torch threads; give them back
    out = tmp_path / f"{name}.json"
    try:
        argv = ["--quick", "--data", str(corpora), "--cache-dir", str(tmp_path / "models"), *extra]
        returned = load(name).main([*argv, "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    written = json.loads(out.read_text())
    assert written["benchmark"] == returned["benchmark"] and written["quick"] is True
    assert written["machine"]["versions"]["torch"] == torch.__version__.split("+")[0]
    assert written["machine"]["cpu_count"] >= 1
    assert written["table"].startswith("| ")
    return written


def positive_rates(runs: dict) -> bool:
    return all(r["per_s"] > 0 and r["per_cpu_s"] > 0 for side in runs.values() for r in side)


@pytest.mark.slow
def test_trainer_overhead(corpora, tmp_path, monkeypatch):
    result = run_quick("bench_trainer_overhead", corpora, tmp_path, monkeypatch)
    assert set(result["runs"]) == {"emoscale", "minimal"} and positive_rates(result["runs"])
    # The trainer and the minimal loop saw the same batches and started from the same loss.
    assert result["same_batches"] is True
    assert result["first_loss"]["emoscale"] == result["first_loss"]["minimal"]
    assert set(result["ratios"]["minimal"]) >= {"per_s", "per_cpu_s"}


@pytest.mark.slow
def test_vs_hf_trainer(corpora, tmp_path, monkeypatch):
    result = run_quick("bench_vs_hf_trainer", corpora, tmp_path, monkeypatch)
    assert set(result["runs"]) == {"emoscale", "trainer (random)", "trainer (group_by_length)"}
    assert positive_rates(result["runs"])
    assert result["loss_difference_one_batch"] < 1e-4  # both recipes train the same objective
    assert result["usual_recipe"] == "trainer (random)"


def test_padding(corpora, tmp_path, monkeypatch):
    result = run_quick("bench_padding", corpora, tmp_path, monkeypatch)
    samplers = result["samplers"]
    assert (
        samplers["length-grouped"]["efficiency"]["median"]
        > samplers["random"]["efficiency"]["median"]
    )
    assert all(0 < s["efficiency"]["median"] <= 1 for s in samplers.values())


@pytest.mark.slow
def test_label_scoring(corpora, tmp_path, monkeypatch):
    result = run_quick("bench_label_scoring", corpora, tmp_path, monkeypatch)
    (model,) = result["models"].values()
    assert positive_rates(model["runs"])
    assert max(model["max_abs_difference_score_vs_naive"].values()) < 1e-4
    assert len(model["label_words"]["MELD, same prompt | score, 2 labels"]) == 2
    assert len(model["label_words"]["MELD, same prompt | score, 7 labels"]) == 7


@pytest.mark.slow
def test_vs_hf_trainer_on_a_model_folder(corpora, tmp_path, monkeypatch, tiny_llama):
    """--model: SST-2, LoRA on every linear layer, and the minimal PEFT loop as a third side."""
    extra = ("--model", str(tiny_llama), "--train", "32")
    result = run_quick("bench_vs_hf_trainer", corpora, tmp_path, monkeypatch, *extra)
    assert set(result["runs"]) == {"emoscale", "minimal loop", "trainer (random)"}
    assert positive_rates(result["runs"])
    for runs in result["runs"].values():
        assert runs[0]["peak_rss_gib"] >= runs[0]["rss_before_gib"] > 0
    assert "s/step (wall)" in result["table"] and "SST-2, model" in result["table"]


def test_label_scoring_on_a_model_folder(corpora, tmp_path, monkeypatch, tiny_llama):
    extra = ("--model", str(tiny_llama))
    result = run_quick("bench_label_scoring", corpora, tmp_path, monkeypatch, *extra)
    (model,) = result["models"].values()
    assert model["model"]["path"] == str(tiny_llama.resolve())
    assert set(model["runs"]) == {
        f"{corpus} | {side}"
        for corpus in ("SST-5", "MELD")
        for side in ("score", "score on KV cache", "generate")
    }
    assert positive_rates(model["runs"])
