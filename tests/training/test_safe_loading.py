"""Safe loading (issue 6): nothing a model folder or a checkpoint holds is executed. Weights and
adapters are safetensors; every other file is read with torch.load(weights_only=True); a model
folder's own code runs only with model.trust_remote_code=true, which run.json records."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from accelerate.utils import load as accelerate_load

from emoscale import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EVIL = """from pathlib import Path
Path(__file__).with_name("EXECUTED").write_text("the model folder's code ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    pass
class EvilForCausalLM(LlamaForCausalLM):
    pass
"""


def booby_trapped(tiny_llama: Path, folder: Path, model_type: str) -> Path:
    """The tiny Llama with code that would leave a marker file, named by config.json's auto_map."""
    shutil.copytree(tiny_llama, folder)
    for name in ("modeling_evil.py", "configuration_evil.py"):
        (folder / name).write_text(EVIL)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_known_architecture_loads_with_transformers_own_code_and_checkpoints_load_safely(
    tiny_llama, run_overrides, tmp_path
):
    model = booby_trapped(tiny_llama, tmp_path / "model", "llama")
    assert train.main(run_overrides + [f"model.path={model}", "train.max_steps=3"]) == 0
    assert not (model / "EXECUTED").exists()
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "run.json").read_text())["trust_remote_code"] is False
    saved = {path.suffix for path in (run_dir / "model").iterdir()}
    assert ".safetensors" in saved and not saved & {".bin", ".pt", ".pkl", ".pth"}
    # What Accelerate's load_state reads besides safetensors: optimizer and scheduler states with
    # torch.load(weights_only=True); RNG states with weights_only=True plus numpy's array types.
    checkpoint = run_dir / "checkpoints/step-00000003"
    assert torch.load(checkpoint / "optimizer.bin", weights_only=True)["state"]
    assert torch.load(checkpoint / "scheduler.bin", weights_only=True)["last_epoch"] == 3
    assert accelerate_load(checkpoint / "random_states_0.pkl")["torch_manual_seed"].numel()


def test_code_in_a_model_folder_of_an_unknown_architecture_is_refused(
    tiny_llama, run_overrides, tmp_path, capsys
):
    model = booby_trapped(tiny_llama, tmp_path / "model", "evil")
    assert train.main(run_overrides + [f"model.path={model}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: config key 'model.trust_remote_code': {model} has model_type 'evil', which "
        "transformers does not know; loading it would run the folder's own code "
        "['configuration_evil.EvilConfig', 'modeling_evil.EvilForCausalLM']. "
        "Set model.trust_remote_code=true only if you trust that code"
    )
    assert not (model / "EXECUTED").exists()
    assert not (tmp_path / "run").exists()


def test_every_torch_load_in_emoscale_is_weights_only():
    source = Path(__file__).resolve().parents[2] / "emoscale"
    for path in source.rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"
