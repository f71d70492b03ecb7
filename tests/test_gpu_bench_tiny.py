"""benchmarks/gpu_llm_memory.py on tiny shapes on CPU: the code the GPU run uses, end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_llm_memory.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_llm_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_benchmark_runs_and_matches_the_estimator(tmp_path):
    bench = load_benchmark()
    out = tmp_path / "bench.json"
    # 4bit exercises everything bf16 does (the non-quantised modules are bf16), plus bitsandbytes.
    argv = ["--tiny", "--steps", "1", "--warmup", "0", "--precisions", "4bit",
            "--cache-dir", str(tmp_path / "models"), "--json", str(out)]  # fmt: skip
    results = bench.main(argv)
    assert json.loads(out.read_text()) == results
    # 2 models x 2 methods x 2 runners
    assert len(results) == 8
    assert {(r["runner"], r["method"]) for r in results} == {
        (runner, method) for runner in ("emoscale", "trainer") for method in ("lora", "ptuning_v2")
    }
    for r in results:
        assert r["tokens_per_s"] > 0 and r["mfu"] is None  # no peak FLOPs known for a CPU
        assert r["predicted_gib"] == pytest.approx(r["peak_gib"], rel=0.10), r
