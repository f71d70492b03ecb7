"""`export` merges LoRA/DoRA into a plain model folder that predicts the run's labels."""

from __future__ import annotations

import json

import pytest
import torch

from emoscale import train
from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.errors import EmoscaleError
from emoscale.inference.export import export
from emoscale.models import build_family


def predict_test_split(run_dir, model_path, overrides):
    plain = [item for item in overrides if not item.startswith("lora.")]
    config = load_config(overrides=plain + [f"model.path={model_path}", "model.method=none"])
    family = build_family(config, corpus := load_corpus(config.data))
    model = family.build_model().eval()
    predicted = {}
    with torch.no_grad():
        for batch in family.dataloader(corpus.split("test"), train=False, seed=0):
            for index, label in zip(
                batch["example_index"], family.predict(model, batch)[0], strict=True
            ):
                predicted[int(index)] = family.label_names[int(label)]
    return [predicted[i] for i in range(len(predicted))]


@pytest.mark.parametrize("dora", [False, True])
def test_merged_model_predicts_the_same_labels(run_overrides, tmp_path, dora):
    overrides = run_overrides + ["train.max_steps=40", f"lora.use_dora={str(dora).lower()}"]
    run_dir, _ = train.run(load_config(overrides=overrides))
    out = export(run_dir, tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    saved = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert predict_test_split(run_dir, out, overrides) == [
        p["pred"] for p in saved if p["split"] == "test"
    ]


def test_virtual_token_runs_cannot_merge(run_overrides):
    run_dir, _ = train.run(
        load_config(overrides=run_overrides + ["train.max_steps=2", "model.method=ptuning_v2"])
    )
    with pytest.raises(
        EmoscaleError,
        match="^export: only LoRA/DoRA adapters merge into weights; this run used 'ptuning_v2'$",
    ):
        export(run_dir, run_dir / "merged")
