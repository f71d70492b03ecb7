"""Preemption (issue 6): on SIGTERM or SIGINT a run finishes its optimizer step, saves a checkpoint,
prints the command that resumes it and exits with 128 + the signal number; that command continues
the run exactly. A second signal ends the process at once and leaves the last checkpoint whole."""

from __future__ import annotations

import json
import random
import shlex
import signal
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from training_process import TrainingProcess, latest_step

from emoscale import train
from emoscale.training import checkpoints, preemption

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARGUMENTS = ["train.max_steps=50", "train.save_every_steps=3", "eval.every_steps=20"]
NOTICE = "SIGTERM: stopping after this optimizer step to save a checkpoint (send SIGTERM again to stop at once)"


def outcome(run_dir):
    return [(run_dir / name).read_text() for name in ("metrics.json", "predictions.jsonl")]


def test_sigterm_saves_prints_the_resume_command_and_that_command_resumes_exactly(
    run_overrides, tmp_path
):
    overrides = run_overrides + ARGUMENTS
    assert train.main(overrides + [f"output_dir={tmp_path / 'uninterrupted'}"]) == 0

    run_dir, target = tmp_path / "run", random.randint(3, 30)
    child = TrainingProcess(overrides, tmp_path / "logs")
    child.wait_until(lambda: latest_step(run_dir) >= target)
    child.signal(signal.SIGTERM)
    assert child.wait() == 128 + signal.SIGTERM
    assert NOTICE in child.stderr.read_text()

    step = latest_step(run_dir)  # the step it finished: saved even off the save_every_steps grid
    assert step >= target and not (run_dir / "metrics.json").exists()
    command = [sys.executable, "-m", "emoscale.train", "--config", str(run_dir / "config.yaml")]
    command += [f"output_dir={run_dir}", "--resume"]
    assert child.stdout.read_text().splitlines()[-2:] == [
        f"stopped by SIGTERM after step {step}; checkpoint {run_dir}/checkpoints/"
        f"step-{step:08d} saved. Resume with:",
        f"  {shlex.join(command)}",
    ]
    assert train.main(shlex.split(child.stdout.read_text().splitlines()[-1])[3:]) == 0
    assert outcome(run_dir) == outcome(tmp_path / "uninterrupted"), f"stopped after step {step}"


def test_a_second_signal_ends_the_run_at_once_and_the_last_checkpoint_stays_whole(
    run_overrides, tmp_path
):
    # One optimizer step per epoch (480 micro-batches, seconds long), so the run is still in the
    # step when the second signal comes, a second after the first (a quicker repeat counts as the
    # same signal delivered twice).
    run_dir = tmp_path / "run"
    overrides = ["train.batch_size=1", "train.grad_accum=480", "train.max_steps=3"]
    child = TrainingProcess(run_overrides + overrides, tmp_path / "logs")
    child.wait_until(lambda: latest_step(run_dir) >= 1)  # step 2 has just begun
    child.signal(signal.SIGINT)  # Ctrl-C, twice
    child.wait_until(lambda: "SIGINT: stopping after this optimizer step" in child.output())
    time.sleep(preemption.SAME_SIGNAL_SECONDS + 0.2)
    child.signal(signal.SIGINT)
    assert child.wait() == -signal.SIGINT  # the signal's default action, not a clean exit (130)

    folder = checkpoints.latest(run_dir)
    assert folder.name == checkpoints.folder_name(1)
    assert json.loads((folder / "progress.json").read_text())["step"] == 1
    assert load_file(str(folder / "model.safetensors"))
    assert torch.load(folder / "optimizer.bin", weights_only=True)["state"]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_signal_to_one_rank_stops_all_ranks_after_the_same_step(run_overrides, tmp_path):
    launch = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    run_dir = tmp_path / "run"
    child = TrainingProcess(run_overrides + ARGUMENTS, tmp_path / "logs", launch)
    child.wait_until(lambda: latest_step(run_dir) >= 3)
    ranks = [p for p in child.descendants() if "emoscale/train.py" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    ranks[1].send_signal(signal.SIGTERM)  # one rank only, as when a scheduler signals unevenly
    assert child.wait() != 0  # the launcher reports the ranks' 143 as a failure
    output = child.output()
    step = latest_step(run_dir)
    # Printed by rank 0, which got no signal itself: the ranks agreed through the all-gather.
    assert f"stopped by SIGTERM after step {step}; checkpoint" in output
    assert "--num_processes 2 --multi_gpu emoscale/train.py --config" in output
    progress = json.loads((run_dir / f"checkpoints/step-{step:08d}/progress.json").read_text())
    assert progress["step"] == step and not (run_dir / "metrics.json").exists()
