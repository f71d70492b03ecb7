"""Merge a run's LoRA/DoRA adapter into its base model: a plain model folder for any HF tool.

    emoscale export RUN_DIR --out DIR

The folder loads with AutoModelForCausalLM (no PEFT needed) and predicts the same labels as the run.
Virtual-token methods (P-Tuning v2, prompt tuning, P-tuning) add inputs rather than weights, so
there is nothing to merge; their adapter folder is what to share.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from emoscale.config import load_config, rules
from emoscale.errors import EmoscaleError
from emoscale.inference.predict import check_run_files
from emoscale.models import base_model, model_folder
from emoscale.models.adapters import DTYPES, check_model_folder
from emoscale.output_folder import new_folder, refuse_existing
from emoscale.training import run_folder


def export(run_dir: str | Path, out: str | Path) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    if rules.deepspeed_zero_stage() is not None:
        raise EmoscaleError(
            "export: run it as one plain process, not under DeepSpeed (merging needs whole weights)"
        )
    if not (run_dir / "config.yaml").is_file():
        raise EmoscaleError(f"export: {run_dir} is not a run folder (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    adapter = run_dir / "model"
    if config.model.method != "lora":
        raise EmoscaleError(
            f"export: only LoRA/DoRA adapters merge into weights; this run used {config.model.method!r}"
        )
    check_run_files(run_dir, config)  # no adapter, a truncated one: one line, before the base loads
    # apart from the run and its base first: refuse_existing probes the folder it would write in
    run_folder.check_apart(out, config, run_dir, "export: --out")
    refuse_existing(out, "export: --out")
    base_path = check_model_folder(config.model.path)
    model_folder.check(base_path)
    base_model.check(run_dir, base_path)  # the adapter must go into the weights it was trained on
    # Merge into full-precision weights: merging into 8-bit/4-bit weights would round the update away.
    base = AutoModelForCausalLM.from_pretrained(
        base_path,
        dtype=DTYPES[config.model.dtype],
        trust_remote_code=config.model.trust_remote_code,
    )
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    with new_folder(out, "export: --out") as work:  # whole or absent, also after a failure
        merged.save_pretrained(work, safe_serialization=True)
        AutoTokenizer.from_pretrained(
            base_path, trust_remote_code=config.model.trust_remote_code
        ).save_pretrained(work)
        (work / "emoscale_export.json").write_text(
            json.dumps({"run": str(run_dir), "base_model": str(base_path)})
        )
    return out
