"""{lora, ptuning_v2} x {DDP, ZeRO-2, ZeRO-3} on two real CPU processes (gloo), through the shipped
accelerate configs, plus a ZeRO-2 resume. Each run checks sharding, learning, evaluation coverage
and the saved adapter; ZeRO-3's adapter is reloaded on one process and must predict the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.models import build_family
from emoscale.models.prompted_lm import PromptedLM

REPO = Path(__file__).resolve().parents[2]
SETUPS = {"ddp": "cpu_ddp.yaml", "zero2": "cpu_zero2.yaml", "zero3": "cpu_zero3.yaml"}
METHODS = {
    "lora": ["model.method=lora"],
    "ptuning_v2": ["model.method=ptuning_v2", "train.lr=3e-2"],
}
STEPS = ["train.max_steps=12", "train.log_every_steps=2", "eval.every_steps=6"]


def launch(setup: str, overrides: list[str], record: Path, extra: list[str] = ()) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "RECORD_DIR": str(record)}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "accelerate_configs" / SETUPS[setup]),
        str(REPO / "tests/scripts/record_batches.py"),
        *overrides,
        *extra,
    ]
    record.mkdir(exist_ok=True)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    # emoscale's one-line errors first: a long log tail once cut the line that said why.
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error:" in line]
    assert result.returncode == 0, "\n".join(errors) + "\n" + result.stderr[-3000:]


def reload_predictions(run_dir: Path, overrides: list[str]) -> list[str]:
    """Test-split predictions of the saved adapter, on one process, without DeepSpeed."""
    config = load_config(overrides=overrides)
    family = build_family(config, corpus := load_corpus(config.data))
    base = AutoModelForCausalLM.from_pretrained(config.model.path)
    model = PromptedLM(PeftModel.from_pretrained(base, run_dir / "model")).eval()
    loader = family.dataloader(corpus.split("test"), train=False, seed=0)
    predicted = {}
    with torch.no_grad():
        for batch in loader:
            for index, label in zip(
                batch["example_index"], family.predict(model, batch)[0], strict=True
            ):
                predicted[int(index)] = family.label_names[int(label)]
    return [predicted[i] for i in range(len(predicted))]


@pytest.mark.multiprocess
@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes(setup, method, run_overrides, tmp_path):
    overrides = run_overrides + METHODS[method] + STEPS
    launch(setup, overrides, tmp_path / "record")
    rank0, rank1 = (
        json.loads((tmp_path / "record" / f"rank-{r}.json").read_text()) for r in (0, 1)
    )
    assert len(rank0) == len(rank1) == 12 * 16
    assert not set(rank0) & set(rank1)  # 12 steps x 2 ranks x 16 < 480: one epoch, no overlap

    run_dir = tmp_path / "run"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["num_processes"] == 2
    assert ("DEEPSPEED" in run["distributed_type"]) == setup.startswith("zero")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    losses = [record["train_loss"] for record in history if "train_loss" in record]
    assert losses[-1] < losses[0]
    predictions = [
        json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()
    ]
    for split in ("dev", "test"):
        ids = [p["id"] for p in predictions if p["split"] == split]
        assert len(ids) == len(set(ids)) == 96  # every example exactly once
    adapter = run_dir / "model" / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size > 1000
    if setup == "zero3":
        saved = [p["pred"] for p in predictions if p["split"] == "test"]
        assert reload_predictions(run_dir, overrides) == saved


@pytest.mark.multiprocess
def test_zero2_run_resumes_from_its_checkpoint(run_overrides, tmp_path):
    overrides = run_overrides + [
        "train.max_steps=12",
        "eval.every_steps=6",
        "train.keep_checkpoints=5",
    ]
    launch("zero2", overrides, tmp_path / "first")
    run_dir = tmp_path / "run"
    first = json.loads((run_dir / "metrics.json").read_text())
    # Roll the run back to its step-6 checkpoint and resume: it must end where the first run ended.
    (run_dir / "checkpoints" / "latest").write_text("step-00000006")
    launch("zero2", overrides, tmp_path / "second", extra=["--resume"])
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["test"]["accuracy"] == pytest.approx(first["test"]["accuracy"], abs=1e-6)
    assert resumed["dev"]["macro_f1"] == pytest.approx(first["dev"]["macro_f1"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_process_generate_mode_keeps_each_answer_with_its_example(run_overrides, tmp_path):
    """Generated answer texts cannot ride the tensor gather: they are gathered as objects and
    must land on their own examples. One process re-evaluating the saved run gives the same
    answer for every test example."""
    from emoscale.inference import predict

    overrides = run_overrides + ["eval.mode=generate"] + STEPS
    launch("ddp", overrides, tmp_path / "record")
    run_dir = tmp_path / "run"
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    test = [row for row in rows if row["split"] == "test"]
    assert len(test) == 96 and all(isinstance(row["answer"], str) for row in rows)
    predict.evaluate_run(run_dir, out=tmp_path / "one")
    alone = [json.loads(line) for line in (tmp_path / "one/predictions.jsonl").open()]
    assert [(row["id"], row["answer"]) for row in alone] == [
        (row["id"], row["answer"]) for row in test
    ]
    assert len({row["answer"] for row in test}) > 1  # not one answer for every example
