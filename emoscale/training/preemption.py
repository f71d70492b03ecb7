"""Stop cleanly on SIGTERM or SIGINT (a preempted job, Ctrl-C): finish the optimizer step, save a
checkpoint, print the command that resumes, exit with 128 + the signal number (143 for SIGTERM).

    with StopSignal() as stop_signal:          # emoscale/training/trainer.py, around the training loop
        ...                                     # after every optimizer step:
        if stop_signal.received(accelerator):   # all ranks agree
            save; print(stop_signal.report(...)); raise stop_signal.exit()

A second signal, a second or more after the first, ends the process at once (the signal's default
action); one within that second is taken for the same signal delivered twice, as when a scheduler
signals every process and `accelerate launch` forwards its own copy to the ranks. Stopping at once
cannot corrupt the last checkpoint: checkpoints are written to a temporary folder and renamed
(checkpoints.py). Ranks may get the signal at different steps; the flag is gathered across ranks
after each step, so all ranks stop after the same step.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from emoscale.config import rules
from emoscale.training.checkpoints import folder_name

SIGNALS = (signal.SIGTERM, signal.SIGINT)
SAME_SIGNAL_SECONDS = 1.0  # a repeat this soon is the same signal delivered twice


class Preempted(SystemExit):
    """Raised after the checkpoint is saved; exits with 128 + the signal number, as a shell would."""


class StopSignal:
    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
                # Restart system calls the signal interrupts: Python would let them fail with
                # EINTR, and a library thread (gloo's sockets, a checkpoint write) may not retry.
                signal.siginterrupt(number, False)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        name = signal.Signals(number).name
        if self.signal_number is not None:
            if time.monotonic() - self._first_at < SAME_SIGNAL_SECONDS:
                return  # the same signal, delivered twice (scheduler and launcher)
            signal.signal(number, signal.SIG_DFL)  # a second signal: its default action, now
            os.kill(os.getpid(), number)
            return
        self.signal_number, self._first_at = number, time.monotonic()
        # os.write, not print: the handler may interrupt a print (tqdm) holding stderr's buffer.
        os.write(
            2,
            f"\n{name}: stopping after this optimizer step to save a checkpoint "
            f"(send {name} again to stop at once)\n".encode(),
        )

    def received(self, accelerator: Accelerator) -> bool:
        """True on every rank once any rank got a signal (one small all-gather per step). The flag
        is read once, before the gather: a signal landing after it counts at the next step, so a
        rank can never decide on a flag the others did not see."""
        number = self.signal_number or 0
        if accelerator.num_processes > 1:
            mine = torch.tensor([number], device=accelerator.device)
            number = int(accelerator.gather(mine).max().item())
        if number and self.signal_number is None:
            self.signal_number = number  # another rank's signal
        return bool(number)

    def report(self, run_dir: Path, step: int, accelerator: Accelerator) -> str:
        name = signal.Signals(self.signal_number).name
        checkpoint = run_dir / "checkpoints" / folder_name(step)
        return (
            f"stopped by {name} after step {step}; checkpoint {checkpoint} saved. Resume with:\n"
            f"  {resume_command(run_dir, accelerator.num_processes)}"
        )

    def exit(self) -> Preempted:
        return Preempted(128 + self.signal_number)


def resume_command(run_dir: Path, num_processes: int) -> str:
    """The command that continues this run: its resolved config.yaml, the same folder, --resume.
    Under `accelerate launch`, the launch options that shape the run (processes, DeepSpeed)."""
    arguments = ["--config", str(run_dir / "config.yaml"), f"output_dir={run_dir}", "--resume"]
    if num_processes == 1 and "LOCAL_RANK" not in os.environ:
        return shlex.join([sys.executable, "-m", "emoscale.train", *arguments])
    launch = ["accelerate", "launch", "--num_processes", str(num_processes)]
    if rules.uses_deepspeed():
        launch.append("--use_deepspeed")
        if os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"):
            launch += ["--deepspeed_config_file", os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"]]
    elif num_processes > 1:
        launch.append("--multi_gpu")
    return shlex.join([*launch, "emoscale/train.py", *arguments])
