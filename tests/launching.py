"""`accelerate launch` with 2 CPU processes (gloo), as a user would start a multi-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPO / "emoscale/train.py"
TWO_CPU_PROCESSES = [
    "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
    "--mixed_precision", "no", "--dynamo_backend", "no",
]  # fmt: skip


def launch_two_processes(
    arguments: list[str], script: Path = TRAIN_SCRIPT, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `script arguments...` on two processes; the caller checks the outcome."""
    command = [sys.executable, "-m", "accelerate.commands.launch", *TWO_CPU_PROCESSES]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*command, str(script), *arguments],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def succeeded(result: subprocess.CompletedProcess) -> bool:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return True
