"""One run on two nodes equals one machine with two processes: launch/slurm.sh under a real
two-node SLURM (ZeRO-3 over gloo), and two `accelerate launch` "machines" on 127.0.0.1 (DDP)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from launching import REPO, TRAIN_SCRIPT, launch_two_processes, succeeded

from emoscale.tiny import demo

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


@pytest.fixture
def run_args(tiny_llama, tmp_path):
    corpus = demo.write_corpus(tmp_path / "corpus", {"train": 32, "dev": 8, "test": 8})
    return demo.overrides(corpus, tiny_llama) + [
        "lora.target_modules=[q_proj,v_proj]", "train.batch_size=8", "train.max_steps=3",
        "model.dtype=float32", "train.mixed_precision=no",
    ]  # fmt: skip


def results(run_dir: Path) -> tuple[dict, str]:
    assert json.loads((run_dir / "run.json").read_text())["num_processes"] == 2
    return json.loads((run_dir / "metrics.json").read_text()), (
        run_dir / "predictions.jsonl"
    ).read_text()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_slurm_two_node_zero3_run_equals_one_machine(slurm_two_nodes, run_args, tmp_path):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    slurm_env = env | {
        "ACCELERATE_CONFIG": "accelerate_configs/cpu_two_nodes_zero3.yaml",
        "GPUS_PER_NODE": "1", "MIXED_PRECISION": "no", "MAIN_PORT": str(free_port()),
    }  # fmt: skip
    log = tmp_path / "slurm.out"
    job = subprocess.run(
        ["sbatch", "--wait", "--gpus-per-node=0", f"--output={log}", "launch/slurm.sh",
         *run_args, f"output_dir={tmp_path / 'two_nodes'}"],
        cwd=REPO, env=slurm_env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr + log.read_text()[-3000:]
    nodes = json.loads((tmp_path / "two_nodes" / "run.json").read_text())
    assert nodes["distributed_type"] == "DistributedType.DEEPSPEED"
    one_machine = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch",
         "--config_file", "accelerate_configs/cpu_zero3.yaml", "--main_process_port", str(free_port()),
         str(TRAIN_SCRIPT), *run_args, f"output_dir={tmp_path / 'one_machine'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert succeeded(one_machine)
    assert results(tmp_path / "two_nodes") == results(tmp_path / "one_machine")


def test_two_machines_on_localhost_ddp_run_equals_one_machine(run_args, tmp_path):
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                "accelerate_configs/cpu_two_nodes_ddp.yaml",
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                port,
                str(TRAIN_SCRIPT),
                *run_args,
                f"output_dir={tmp_path / 'two_machines'}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [machine.communicate(timeout=1200)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], outputs[0][-3000:]
    one_machine = launch_two_processes(run_args + [f"output_dir={tmp_path / 'one_machine'}"])
    assert succeeded(one_machine)
    assert results(tmp_path / "two_machines") == results(tmp_path / "one_machine")
