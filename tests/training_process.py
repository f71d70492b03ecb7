"""A real training run in a child process that tests interrupt: start it, wait until its latest
checkpoint passes a step, then kill or signal it (tests/training/test_resume.py, tests/training/test_preemption.py).
Output goes to files, not pipes, so a child never blocks on a full pipe while the test polls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
# One thread: contended threads on 2 shared cores make tiny models many times slower, and the
# in-process runs these are compared with use one thread too (equal numerics).
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}


class TrainingProcess:
    def __init__(self, arguments: list[str], log_dir: Path, launch: list[str] | None = None):
        """`python -m emoscale.train ARGUMENTS`, or `accelerate launch LAUNCH emoscale/train.py ...`."""
        if launch is None:
            command = [sys.executable, "-m", "emoscale.train", *arguments]
        else:
            command = [sys.executable, "-m", "accelerate.commands.launch", *launch]
            command += [str(REPO / "emoscale/train.py"), *arguments]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout, self.stderr = log_dir / "stdout.txt", log_dir / "stderr.txt"
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**ENV, "DS_ACCELERATOR": "cpu"} if launch else ENV,
            stdout=self.stdout.open("w"),
            stderr=self.stderr.open("w"),
        )

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def wait_until(self, condition, timeout: float = 300.0) -> None:
        """Poll `condition()` every 5 ms; fail if the child exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited ({self.process.returncode}):\n{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                raise AssertionError(f"timed out:\n{self.output()[-3000:]}")
            time.sleep(0.005)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def signal(self, number: int) -> None:
        """Signal the child and all its descendants: torch's launcher starts every rank in a
        session of its own, so a process-group kill would leave the ranks running."""
        try:
            child = psutil.Process(self.process.pid)
            family = [*child.children(recursive=True), child]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            try:
                process.send_signal(number)
            except psutil.NoSuchProcess:
                pass

    def wait(self, timeout: float = 300.0) -> int:
        return self.process.wait(timeout)


def latest_step(run_dir: Path) -> int:
    """The step of the run's latest checkpoint, 0 before the first."""
    try:
        return int((run_dir / "checkpoints" / "latest").read_text().strip().removeprefix("step-"))
    except (FileNotFoundError, ValueError):
        return 0
