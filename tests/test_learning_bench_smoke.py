"""benchmarks/bench_learning.py end to end on a tiny SST-2-like corpus: emoscale and the minimal
loop, given the same model, token ids, batches, optimizer and schedule, reach the same accuracy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from emoscale.tiny import demo

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_emoscale_learns_exactly_what_the_minimal_loop_learns(tmp_path):
    data = tmp_path / "data" / "sst"
    data.mkdir(parents=True)
    for offset, (split, count) in enumerate({"train": 96, "dev": 16, "test": 32}.items()):
        rows = [row for row in demo.sentences(count * 2, seed=offset) if row[1] != "neutral"]
        lines = [f"{int(label == 'positive')} {text.lower()}" for text, label in rows[:count]]
        (data / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n")
    spec = importlib.util.spec_from_file_location(
        "bench_learning", BENCHMARKS / "bench_learning.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        result = bench.main(
            ["--data", str(tmp_path / "data"), "--work", str(tmp_path / "work"), "--epochs", "2",
             "--lr", "3e-3", "--dev", "16", "--test", "32"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    emoscale, minimal = result["sides"]["emoscale"], result["sides"]["minimal loop"]
    assert len(emoscale["dev"]) == len(minimal["dev"]) == 2
    assert emoscale["dev"] == pytest.approx(minimal["dev"], abs=1 / 16 + 1e-9)
    assert abs(emoscale["test_accuracy"] - minimal["test_accuracy"]) <= 1 / 32 + 1e-9
