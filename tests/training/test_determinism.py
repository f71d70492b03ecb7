"""Determinism (issue 6): the same config and seed on CPU give the same metrics and predictions, and
the run folder records what is needed to repeat a run: library versions, git commit, command line
and the resolved config."""

from __future__ import annotations

import json
import re
import sys

import pytest

from emoscale import train
from emoscale.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_same_config_and_seed_give_the_same_run_twice(run_overrides, tmp_path):
    overrides = run_overrides + [
        "train.max_steps=20",
        "eval.every_steps=10",
        "train.log_every_steps=5",
    ]
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        assert train.main(overrides + [f"output_dir={folder}"]) == 0
    for name in ("metrics.json", "predictions.jsonl", "history.jsonl"):
        first, second = ((folder / name).read_text() for folder in folders)
        assert first == second, name
    assert train.main(overrides + [f"output_dir={tmp_path / 'seed'}", "seed=7"]) == 0
    assert (tmp_path / "seed/history.jsonl").read_text() != (
        folders[0] / "history.jsonl"
    ).read_text()

    run = json.loads((folders[0] / "run.json").read_text())
    assert {"torch", "transformers", "peft", "accelerate", "deepspeed"} <= set(run["versions"])
    assert all(run["versions"][name] for name in ("emoscale", "torch", "transformers", "peft"))
    assert re.fullmatch(r"[0-9a-f]{40}", run["git_commit"])
    assert run["command"] == sys.argv and run["python"]
    assert run["base_model"]["fingerprint"]["weights"]
    # config.yaml is the resolved config: every key with its value, loadable as it is.
    config = load_config(overrides=overrides + [f"output_dir={folders[0]}"])
    assert load_config(folders[0] / "config.yaml") == config
