"""benchmarks/gpu_check.py on CPU with tiny shapes (--dry-run): the code a lent GPU runs, kept
from rotting; and its promise to stop cleanly, keeping what it has."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "benchmarks" / "gpu_check.py"


def start(tmp_path: Path, *arguments: str) -> subprocess.Popen:
    command = [sys.executable, str(DRIVER), "--dry-run", "--out", str(tmp_path / "out"),
               "--work", str(tmp_path / "work"), *arguments]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def processes_using(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder`: what a stopped check left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in command:
            found.append(command)
    return found


@pytest.mark.slow
def test_dry_run_trains_scores_and_measures(tmp_path):
    # One quantised training run (bitsandbytes, LoRA, reload through `emoscale eval`), the scoring
    # routes and the memory benchmark: every kind of part; --jobs 2 overlaps their start-up.
    only = "install,prepare,train:llama-4bit-lora,scoring,memory"
    driver = start(tmp_path, "--only", only, "--jobs", "2", "--time-limit", "900")
    printed, _ = driver.communicate(timeout=960)
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    parts = {part["name"]: part for part in summary["parts"]}
    assert driver.returncode == 0, printed + json.dumps(summary, indent=1)[-4000:]
    assert list(parts) == ["install", "prepare", "memory", "train:llama-4bit-lora", "scoring"]
    assert {part["status"] for part in parts.values()} == {"passed"}

    install = parts["install"]["result"]
    assert install["would_replace"] == [] and "torch" not in install["would_install"]
    train = parts["train:llama-4bit-lora"]["result"]
    assert train["last_loss"] < train["first_loss"]
    assert train["reload_agreement"] == 1.0 and train["checks"]["reload_same_labels"]
    scoring = parts["scoring"]["result"]
    # fp32 on CPU: the three routes agree to summation order
    assert max(r["largest"] for r in scoring["rows"] if r["dtype"] == "float32") < 2e-3
    assert {r["method"] for r in scoring["rows"]} == {"none", "ptuning_v2"}
    memory = parts["memory"]["result"]["rows"]
    assert {(r["precision"], r["method"]) for r in memory} == {
        (p, m) for p in ("bf16", "8bit", "4bit") for m in ("lora", "ptuning_v2")
    }
    table = (tmp_path / "out" / "results.md").read_text()
    assert "# GPU check: passed" in table and "| llama-4bit-lora | 10 |" in table
    assert table in printed


@pytest.mark.slow
def test_a_stopped_check_keeps_its_results_and_leaves_no_process(tmp_path):
    driver = start(tmp_path, "--only", "train:llama-bf16-lora", "--time-limit", "900")
    log = tmp_path / "out" / "logs" / "prepare.log"
    deadline = time.monotonic() + 300
    while not log.exists() and time.monotonic() < deadline:  # install done, prepare running
        time.sleep(0.2)
    assert log.exists(), "prepare never started"
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=30)
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    statuses = {part["name"]: (part["status"], part["error"]) for part in summary["parts"]}
    assert statuses == {
        "install": ("passed", None),
        "prepare": ("stopped", f"stopped by signal {int(signal.SIGTERM)}"),
        "train:llama-bf16-lora": ("skipped", f"stopped by signal {int(signal.SIGTERM)}"),
    }
    assert driver.returncode == 1 and not summary["passed"]
    assert processes_using(tmp_path / "work") == []


def test_an_unknown_part_is_one_line(tmp_path):
    driver = start(tmp_path, "--only", "train:llama-2bit-lora")
    _, error = driver.communicate(timeout=60)
    names = (
        "install, prepare, memory, train:llama-bf16-lora, train:llama-8bit-lora, "
        "train:llama-4bit-lora, train:llama-bf16-ptuning_v2, train:glm-bf16-lora, "
        "train:glm-4bit-ptuning_v2, train:llama-bf16-lora-zero2, scoring"
    )
    assert error == f"error: --only: no part named 'train:llama-2bit-lora'; parts: {names}\n"
    assert driver.returncode == 2 and not (tmp_path / "out").exists()
