"""Exact resume (issue 6): a run killed with SIGKILL at a random step and resumed with --resume ends
with the same metrics, predictions and logged history as an uninterrupted run of the same config.
The kill is real: a child process, killed as soon as its latest checkpoint passes a random step
(the kill may land mid-step or mid-save). Checkpoints hold trainable tensors only."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_process import REPO, TrainingProcess, latest_step

from emoscale import train
from emoscale.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 60  # two epochs of the demo corpus (30 batches of 16): the resume may cross an epoch
RESUMABLE = [
    f"train.max_steps={STEPS}",
    "train.save_every_steps=1",  # a checkpoint at every step: the kill can land anywhere
    "eval.every_steps=20",
    "train.log_every_steps=5",
]


def outcome(run_dir: Path) -> dict:
    """What must not differ between an interrupted and an uninterrupted run."""
    return {
        name: (run_dir / name).read_text()
        for name in ("metrics.json", "predictions.jsonl", "history.jsonl")
    }


def kill_at_a_random_step(arguments, run_dir: Path, launch=None, last: int = STEPS - 15) -> int:
    # A random step each run; EMOSCALE_KILL_STEP=N repeats one (the failure message names it).
    target = int(os.environ.get("EMOSCALE_KILL_STEP", 0)) or random.randint(3, last)
    child = TrainingProcess(arguments, run_dir.parent / f"{run_dir.name}-logs", launch)
    child.wait_until(lambda: latest_step(run_dir) >= target)
    child.signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"
    return target


def test_a_run_killed_at_a_random_step_resumes_exactly(run_overrides, tmp_path, capsys):
    overrides = run_overrides + RESUMABLE
    assert train.main(overrides + [f"output_dir={tmp_path / 'uninterrupted'}"]) == 0

    run_dir = tmp_path / "run"
    target = kill_at_a_random_step(overrides, run_dir)
    killed_at = latest_step(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["command"][1:] == overrides
    assert train.main(overrides + ["--resume"]) == 0
    assert f"resumed from step {killed_at} " in capsys.readouterr().out
    assert outcome(run_dir) == outcome(tmp_path / "uninterrupted"), f"killed after step {target}"


@pytest.mark.slow  # ~25 s: two runs and a killed child
def test_a_ptuning_v2_run_killed_at_a_random_step_resumes_exactly(run_overrides, tmp_path):
    """P-Tuning v2 with its default starting prefix (ptuning.init=tokens: the frozen model runs
    once over the init prompt): on --resume that init runs again while the model is built, and
    the checkpoint's trained prefix must replace it, with no random draw left out of step."""
    overrides = run_overrides + RESUMABLE
    overrides += ["model.method=ptuning_v2", "ptuning.num_virtual_tokens=8", "train.lr=3e-2"]
    overrides += ["train.max_steps=40", "eval.every_steps=20"]  # crosses the epoch at step 30
    uninterrupted = tmp_path / "uninterrupted"
    assert train.main(overrides + [f"output_dir={uninterrupted}"]) == 0

    run_dir = tmp_path / "run"
    target = kill_at_a_random_step(overrides, run_dir, last=32)
    assert train.main(overrides + ["--resume"]) == 0
    assert outcome(run_dir) == outcome(uninterrupted), f"killed after step {target}"
    prefixes = [
        load_file(str(folder / "model/adapter_model.safetensors"))
        for folder in (run_dir, uninterrupted)
    ]
    assert prefixes[0].keys() == prefixes[1].keys() == {"prompt_embeddings"}
    assert torch.equal(prefixes[0]["prompt_embeddings"], prefixes[1]["prompt_embeddings"])


@pytest.mark.slow  # ~25 s: two runs and a killed child
def test_a_resume_may_change_result_neutral_keys_and_records_them(run_overrides, tmp_path, capsys):
    """Worker count, audio cache and checkpoint cadence change nothing a run computes: --resume
    takes new values (run.json records them) and ends as the uninterrupted run; any other key
    is still refused (tests/test_bad_input_catalogue.py)."""
    overrides = run_overrides + RESUMABLE + ["train.max_steps=12", "eval.every_steps=6"]
    assert train.main(overrides + [f"output_dir={tmp_path / 'uninterrupted'}"]) == 0

    run_dir = tmp_path / "run"
    target = kill_at_a_random_step(overrides, run_dir, last=8)
    killed_at = latest_step(run_dir)
    changed = ["train.num_workers=1", "data.audio_cache_mb=0", "train.save_every_steps=2"]
    changed += ["train.keep_checkpoints=3"]
    capsys.readouterr()
    assert train.main(overrides + changed + ["--resume"]) == 0
    said = capsys.readouterr().out
    assert "--resume: train.num_workers changed 0 -> 1 (only how many processes prepare " in said
    assert outcome(run_dir) == outcome(tmp_path / "uninterrupted"), f"killed after step {target}"
    assert json.loads((run_dir / "run.json").read_text())["resumes"] == [
        {
            "checkpoint": f"step-{killed_at:08d}",
            "changed": {
                "data.audio_cache_mb": {"was": 512.0, "now": 0.0},
                "train.save_every_steps": {"was": 1, "now": 2},
                "train.keep_checkpoints": {"was": 2, "now": 3},
                "train.num_workers": {"was": 0, "now": 1},
            },
        }
    ]
    assert "train_seconds" in json.loads((run_dir / "run.json").read_text())  # results added


def test_checkpoints_hold_trainable_tensors_only_and_keep_the_newest_and_the_best(
    run_overrides, tmp_path
):
    run_dir, _ = train.run(
        load_config(overrides=run_overrides + RESUMABLE + ["train.max_steps=25"])
    )
    progress = json.loads((run_dir / "checkpoints/step-00000025/progress.json").read_text())
    kept = {path.name for path in (run_dir / "checkpoints").glob("step-*")}
    assert kept == {"step-00000024", "step-00000025", progress["best_checkpoint"]}  # keep=2 + best
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    tensors = load_file(str(run_dir / "checkpoints/step-00000025/model.safetensors"))
    counts = json.loads((run_dir / "run.json").read_text())["trainable_parameters"]
    assert all("lora_" in name for name in tensors)
    assert sum(tensor.numel() for tensor in tensors.values()) == counts["trainable"]
    assert counts["trainable"] < counts["total"] / 5  # the frozen base is not in the checkpoint


@pytest.mark.slow
def test_a_fusion_run_killed_at_a_random_step_resumes_exactly(fusion_overrides, tmp_path):
    # 10 batches per epoch: 20 steps cross an epoch; MINE's shuffles and moving average and the
    # per-epoch audio crops must all continue exactly.
    overrides = fusion_overrides + RESUMABLE + ["train.max_steps=20", "eval.every_steps=10"]
    assert train.main(overrides + [f"output_dir={tmp_path / 'uninterrupted'}"]) == 0

    run_dir = tmp_path / "run"
    target = kill_at_a_random_step(overrides, run_dir, last=14)
    assert train.main(overrides + ["--resume"]) == 0
    assert outcome(run_dir) == outcome(tmp_path / "uninterrupted"), f"killed after step {target}"


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_process_zero2_run_killed_at_a_random_step_resumes_exactly(
    run_overrides, tiny_llama, tmp_path
):
    launch = [
        "--num_processes", "2", "--num_machines", "1", "--use_deepspeed",
        "--deepspeed_config_file", str(REPO / "ds_configs/zero2.json"),
        "--mixed_precision", "no", "--dynamo_backend", "no",
        # A free port each: DeepSpeed's CPU all-reduce names its shared memory after the port, so
        # two runs on the default 29500 (these two, or anyone's) would read each other's sums.
        "--main_process_port", "0",
    ]  # fmt: skip
    # 2 ranks x batch 16 = 15 optimizer steps per epoch; 30 steps cross an epoch boundary.
    overrides = run_overrides + RESUMABLE + ["train.max_steps=30", "eval.every_steps=10"]
    uninterrupted = tmp_path / "uninterrupted"
    # Both start together: on two cores their start-up (imports, DeepSpeed, gloo) overlaps.
    reference = TrainingProcess(
        overrides + [f"output_dir={uninterrupted}"], tmp_path / "ref", launch
    )
    run_dir = tmp_path / "run"
    target = kill_at_a_random_step(overrides, run_dir, launch, last=22)
    killed_at = latest_step(run_dir)
    assert reference.wait() == 0, reference.output()[-3000:]

    resumed = TrainingProcess(overrides + ["--resume"], tmp_path / "resumed", launch)
    assert resumed.wait() == 0, resumed.output()[-3000:]
    assert f"resumed from step {killed_at} " in resumed.output()
    assert outcome(run_dir) == outcome(uninterrupted), f"killed after step {target}"
    # DeepSpeed's own format, without the frozen base (exclude_frozen_parameters).
    module = run_dir / "checkpoints/step-00000030/pytorch_model/mp_rank_00_model_states.pt"
    base = tiny_llama / "model.safetensors"
    assert module.stat().st_size < base.stat().st_size / 4
