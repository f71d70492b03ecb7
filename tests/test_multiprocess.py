"""Real multi-process runs: `accelerate launch` with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def launch(args: list[str], env_extra: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    command = [sys.executable, "-m", "accelerate.commands.launch", *args]
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.multiprocess
def test_two_cpu_processes_shard_batches_and_evaluate_every_example_once(run_overrides, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    launch(
        [
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(REPO / "tests/scripts/record_batches.py"),
            *run_overrides,
            "train.max_steps=12",
        ],
        {"RECORD_DIR": str(record)},
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
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO / "emoscale/train.py"), *run_overrides, "train.lrr=0.1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: unknown config key 'train.lrr' (did you mean 'train.lr'?)"]
