"""Real multi-process runs: `accelerate launch` with 2 CPU processes (gloo)."""

from __future__ import annotations

import json

import pytest
from launching import REPO, launch_two_processes, succeeded


@pytest.mark.multiprocess
def test_two_cpu_processes_shard_batches_and_evaluate_every_example_once(run_overrides, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    script = REPO / "tests/scripts/record_batches.py"
    environment = {"RECORD_DIR": str(record)}
    assert succeeded(
        launch_two_processes([*run_overrides, "train.max_steps=12"], script, environment)
    )
    rank0 = json.loads((record / "rank-0.json").read_text())
    rank1 = json.loads((record / "rank-1.json").read_text())
    assert (
        len(rank0) == len(rank1) == 12 * 16
    )  # 12 steps (within one epoch) of 16 examples on each rank
    assert not set(rank0) & set(rank1)  # the ranks trained on different examples
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "run.json").read_text())["num_processes"] == 2
    predictions = [
        json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()
    ]
    dev_ids = [p["id"] for p in predictions if p["split"] == "dev"]
    assert sorted(dev_ids) == sorted(set(dev_ids)) and len(dev_ids) == 96  # every dev example once
    assert json.loads((run_dir / "metrics.json").read_text())["dev"]["num_examples"] == 96


@pytest.mark.multiprocess
def test_bad_input_is_one_line_not_one_per_rank(run_overrides):
    result = launch_two_processes([*run_overrides, "train.lrr=0.1"], timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: unknown config key 'train.lrr' (did you mean 'train.lr'?)"]
