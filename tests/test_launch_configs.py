"""Every shipped launch setup: accelerate configs, DeepSpeed configs and launch scripts.

Accelerate's own loaders read each file and resolve it the way `accelerate launch` does; DeepSpeed's
"auto" values are filled the way `Accelerator.prepare` fills them; every script prints its exact
command under DRY_RUN=1, and that command resolves too. The multiprocess tests start real processes
on CPU (gloo; DeepSpeed with DS_ACCELERATOR=cpu): a probe script for each DeepSpeed config, then the
trainer under each CPU accelerate config.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, patch_environment
from accelerate.utils.launch import (
    prepare_deepspeed_cmd_env,
    prepare_multi_gpu_env,
    prepare_simple_launcher_cmd_env,
)

from emoscale.config import load_config

REPO = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIGS = REPO / "accelerate_configs"
DS_CONFIGS = REPO / "ds_configs"
LAUNCH = REPO / "launch"
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


@dataclass(frozen=True)
class Setup:
    distributed_type: str
    num_processes: int  # -1: none in the file, the launch command passes --num_processes
    # None: not in the file (DeepSpeed: from --mixed_precision or the run config)
    mixed_precision: str | None
    use_cpu: bool = False
    ds_config: str | None = None
    num_machines: int = 1


ACCELERATE_SETUPS = {
    "single_gpu.yaml": Setup("NO", 1, "bf16"),
    "multi_gpu.yaml": Setup("MULTI_GPU", -1, "bf16"),
    "zero1.yaml": Setup("DEEPSPEED", -1, None, ds_config="ds_configs/zero1.json"),
    "zero2.yaml": Setup("DEEPSPEED", -1, None, ds_config="ds_configs/zero2.json"),
    "zero3.yaml": Setup("DEEPSPEED", -1, None, ds_config="ds_configs/zero3.json"),
    "zero2_offload.yaml": Setup("DEEPSPEED", -1, None, ds_config="ds_configs/zero2_offload.json"),
    "zero3_offload.yaml": Setup("DEEPSPEED", -1, None, ds_config="ds_configs/zero3_offload.json"),
    "two_nodes_8gpu_zero3.yaml": Setup(
        "DEEPSPEED", 16, None, ds_config="ds_configs/zero3.json", num_machines=2
    ),
    "cpu.yaml": Setup("NO", 1, "no", use_cpu=True),
    "cpu_ddp.yaml": Setup("MULTI_GPU", 2, "no", use_cpu=True),
    "cpu_zero2.yaml": Setup("DEEPSPEED", 2, None, ds_config="ds_configs/zero2.json"),
    "cpu_zero3.yaml": Setup("DEEPSPEED", 2, None, ds_config="ds_configs/zero3.json"),
    "cpu_two_nodes_zero3.yaml": Setup(
        "DEEPSPEED", 2, None, ds_config="ds_configs/zero3.json", num_machines=2
    ),
    "cpu_two_nodes_ddp.yaml": Setup("MULTI_GPU", 2, "no", use_cpu=True, num_machines=2),
}


@dataclass(frozen=True)
class Zero:
    stage: int
    offload_optimizer: str = "none"
    offload_param: str = "none"

    @property
    def saves_16bit_weights(self) -> bool:
        # ZeRO-3 shards the weights; without gathering them on save, save_model writes nothing usable.
        return self.stage == 3


ZERO_SETUPS = {
    "zero1.json": Zero(1),
    "zero2.json": Zero(2),
    "zero3.json": Zero(3),
    "zero2_offload.json": Zero(2, offload_optimizer="cpu"),
    "zero3_offload.json": Zero(3, offload_optimizer="cpu", offload_param="cpu"),
}

# The values Accelerator._prepare_deepspeed (accelerate 1.15) fills "auto" entries with, for a run of
# 2 processes, train.batch_size=8, train.grad_accum=4. The probe test below checks them in a real run.
MICRO_BATCH, GRAD_ACCUM, WORLD = 8, 4, 2
PREPARE_FILLS = {
    # Accelerate's fixed value for "auto", whatever the trainer passes to clip_grad_norm_ (DeepSpeed
    # clips by its config; huggingface/accelerate#3807).
    "gradient_clipping": 1.0,
    "zero_optimization.stage3_gather_16bit_weights_on_model_save": False,
    "train_micro_batch_size_per_gpu": MICRO_BATCH,
    "train_batch_size": MICRO_BATCH * GRAD_ACCUM * WORLD,
}


def test_every_shipped_file_has_an_expectation():
    assert {p.name for p in ACCELERATE_CONFIGS.glob("*")} == set(ACCELERATE_SETUPS)
    assert {p.name for p in DS_CONFIGS.glob("*")} == set(ZERO_SETUPS)
    assert {p.name for p in LAUNCH.glob("*.sh")} == set(SCRIPTS) | {"common.sh", "slurm.sh"}


# --- accelerate configs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACCELERATE_SETUPS))
def test_accelerate_config_parses(name):
    path = ACCELERATE_CONFIGS / name
    expected = ACCELERATE_SETUPS[name]
    config = load_config_from_file(str(path))  # rejects unknown top-level keys
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type.value == expected.distributed_type
    assert config.num_processes == expected.num_processes
    assert config.num_machines == expected.num_machines
    assert config.mixed_precision == expected.mixed_precision
    assert config.use_cpu is expected.use_cpu
    assert config.deepspeed_config.get("deepspeed_config_file") == expected.ds_config
    if expected.ds_config:
        assert (REPO / expected.ds_config).is_file()
    header = path.read_text().split("\ncompute_environment:")[0]
    assert (
        "accelerate launch --config_file accelerate_configs/" in header
        or "sbatch launch/" in header
    )


def launch_args(argv: list[str]):
    """What `accelerate launch ARGV` settles on before it starts anything (its own resolution)."""
    args = launch_command_parser().parse_args(argv)
    args, defaults, mp_from_config_flag = _validate_launch_command(args)
    if args.use_deepspeed:  # as launch_command does, before it calls the DeepSpeed launcher
        fields = list(defaults.deepspeed_config) if defaults else []
        args.deepspeed_fields_from_accelerate_config = ",".join(
            fields + (["mixed_precision"] if mp_from_config_flag else [])
        )
    return args


def deepspeed_plugin_in(env: dict[str, str]) -> DeepSpeedPlugin:
    """The plugin a training process builds from the environment the launcher gives it."""
    clean = {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}
    with patch_environment(**clean):
        return DeepSpeedPlugin()


def check_deepspeed_launch(args, zero: Zero, mixed_precision: str) -> None:
    cmd, env = prepare_deepspeed_cmd_env(args)
    # None: torchrun on each node. A list would be `deepspeed --hostfile ...`, which needs ssh.
    assert cmd is None
    assert env["ACCELERATE_MIXED_PRECISION"] == mixed_precision
    plugin = deepspeed_plugin_in(env)  # raises if the YAML duplicates a DeepSpeed-file setting
    assert plugin.zero_stage == zero.stage
    assert plugin.offload_optimizer_device == zero.offload_optimizer
    assert plugin.offload_param_device == zero.offload_param
    assert plugin.zero3_save_16bit_model is zero.saves_16bit_weights
    assert plugin.zero3_init_flag is (zero.stage == 3)


@pytest.mark.parametrize("name", sorted(ACCELERATE_SETUPS))
def test_accelerate_launch_resolves_config(name, monkeypatch):
    monkeypatch.chdir(REPO)  # deepspeed_config_file is relative to the repository root
    expected = ACCELERATE_SETUPS[name]
    argv = ["--config_file", f"accelerate_configs/{name}"]
    if expected.num_processes == -1:
        argv += ["--num_processes", "4"]
    if expected.num_machines > 1:  # what launch/slurm.sh adds on the second node
        argv += ["--machine_rank", "1", "--main_process_ip", "gpu-a17"]
    args = launch_args(argv + ["emoscale/train.py"])
    processes = 4 if expected.num_processes == -1 else expected.num_processes
    assert args.num_processes == processes
    assert args.use_deepspeed is (expected.distributed_type == "DEEPSPEED")
    assert args.multi_gpu is (expected.distributed_type == "MULTI_GPU")
    if expected.distributed_type == "DEEPSPEED":
        zero = ZERO_SETUPS[Path(expected.ds_config).name]
        check_deepspeed_launch(args, zero, mixed_precision="no")
        assert args.num_machines == expected.num_machines
        if expected.num_machines > 1:
            assert args.deepspeed_multinode_launcher == "standard"
    elif expected.distributed_type == "MULTI_GPU":
        env = prepare_multi_gpu_env(args)  # torchrun, one process per device
        assert args.nproc_per_node == str(processes // expected.num_machines)  # per machine
        assert env["ACCELERATE_MIXED_PRECISION"] == expected.mixed_precision
    else:
        cmd, env = prepare_simple_launcher_cmd_env(args)  # one process, no torchrun
        assert cmd[-1] == "emoscale/train.py"
        assert env["ACCELERATE_MIXED_PRECISION"] == expected.mixed_precision
        assert env["ACCELERATE_USE_CPU"] == str(expected.use_cpu)


def test_precision_in_a_deepspeed_yaml_is_refused(tmp_path, monkeypatch):
    # Why the zero*.yaml files carry no mixed_precision: with a DeepSpeed config file, Accelerate
    # refuses it there (it belongs to the JSON's "auto" or to --mixed_precision).
    monkeypatch.chdir(REPO)
    text = (ACCELERATE_CONFIGS / "zero2.yaml").read_text() + "mixed_precision: bf16\n"
    (tmp_path / "zero2_bf16.yaml").write_text(text)
    args = launch_args(
        ["--config_file", str(tmp_path / "zero2_bf16.yaml"), "--num_processes", "2", "x.py"]
    )
    _, env = prepare_deepspeed_cmd_env(args)
    with pytest.raises(ValueError, match="will be ignored"):
        deepspeed_plugin_in(env)


# --- DeepSpeed configs ----------------------------------------------------------------------------


def flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


@pytest.mark.parametrize("zero", sorted(ZERO_SETUPS))
@pytest.mark.parametrize("mixed_precision", ["no", "bf16", "fp16"])
def test_deepspeed_config_auto_values_are_filled(zero, mixed_precision, monkeypatch):
    for key in [k for k in os.environ if k.startswith("ACCELERATE_")]:
        monkeypatch.delenv(key)
    expected = ZERO_SETUPS[zero]
    raw = json.loads((DS_CONFIGS / zero).read_text())
    # No optimizer or scheduler blocks: the trainer makes AdamW and its scheduler, Accelerate wraps them.
    assert "optimizer" not in raw and "scheduler" not in raw
    plugin = DeepSpeedPlugin(hf_ds_config=str(DS_CONFIGS / zero))
    assert plugin.zero_stage == expected.stage
    assert plugin.offload_optimizer_device == expected.offload_optimizer
    assert plugin.offload_param_device == expected.offload_param
    assert plugin.zero3_save_16bit_model is expected.saves_16bit_weights
    for key in (
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "train_batch_size",
        "bf16.enabled",
        "fp16.enabled",
    ):
        assert plugin.is_auto(key), key
    # What AcceleratorState does with Accelerator(mixed_precision=...), then Accelerator.prepare.
    plugin.set_mixed_precision(mixed_precision)
    plugin.fill_match(
        "gradient_accumulation_steps", must_match=False, gradient_accumulation_steps=GRAD_ACCUM
    )
    plugin.deepspeed_config_process(must_match=False, **PREPARE_FILLS)
    filled = flatten(plugin.deepspeed_config)
    assert [key for key, value in filled.items() if value == "auto"] == []
    assert filled["bf16.enabled"] is (mixed_precision == "bf16")
    assert filled["fp16.enabled"] is (mixed_precision == "fp16")
    assert filled["gradient_accumulation_steps"] == GRAD_ACCUM
    assert filled["train_micro_batch_size_per_gpu"] == MICRO_BATCH
    assert filled["train_batch_size"] == MICRO_BATCH * GRAD_ACCUM * WORLD
    assert filled["gradient_clipping"] == 1.0
    # A literal true, not "auto": "auto" would be filled with False and ZeRO-3 could not save weights.
    saves = filled.get("zero_optimization.stage3_gather_16bit_weights_on_model_save", False)
    assert saves is expected.saves_16bit_weights


# --- launch scripts -------------------------------------------------------------------------------

TRAIN_ARGS = ["--config", "run.yaml", "train.lr=3e-4", "prompt.template=Text: {text} Emotion:"]
SINGLE = "--config_file accelerate_configs/single_gpu.yaml emoscale/train.py".split()
ZERO = "--config_file accelerate_configs/zero{}.yaml --num_processes 3 --mixed_precision bf16"
SCRIPTS = {  # the `accelerate launch` arguments each script prints for TRAIN_ARGS and 3 visible GPUs
    "one_gpu.sh": [*SINGLE, *TRAIN_ARGS],
    "one_gpu_8bit.sh": [*SINGLE, *TRAIN_ARGS, "model.load_in_8bit=true"],
    "multi_gpu_zero2.sh": [*ZERO.format(2).split(), "emoscale/train.py", *TRAIN_ARGS],
    "multi_gpu_zero3.sh": [*ZERO.format(3).split(), "emoscale/train.py", *TRAIN_ARGS],
}


def fake_command(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
    (folder / name).chmod(0o755)


def run_script(script: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "CUDA_VISIBLE", "EMOSCALE_ROOT"))
    }
    full_env.pop("NUM_GPUS", None)
    full_env.pop("DRY_RUN", None)
    full_env |= env
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("script", sorted(p.name for p in LAUNCH.glob("*.sh")))
def test_launch_script_is_valid_bash(script):
    text = (LAUNCH / script).read_text()
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)
    if script != "common.sh":
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text
        assert os.access(LAUNCH / script, os.X_OK)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_launch_script_dry_run_prints_the_command(script, tmp_path, monkeypatch):
    # A fake accelerate proves DRY_RUN starts nothing; cwd elsewhere proves the scripts find the root.
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "accelerate", f"touch {tmp_path}/accelerate-ran")
    done = run_script(
        LAUNCH / script,
        TRAIN_ARGS,
        cwd=tmp_path,
        DRY_RUN="1",
        CUDA_VISIBLE_DEVICES="0,1,3",
        PATH=f"{bin_dir}:{os.environ['PATH']}",
    )
    assert done.returncode == 0, done.stderr
    command = shlex.split(done.stdout)
    assert command == ["accelerate", "launch", *SCRIPTS[script]]
    assert not (tmp_path / "accelerate-ran").exists()
    # The printed command resolves in Accelerate, with paths relative to the repository root.
    monkeypatch.chdir(REPO)
    args = launch_args(command[2:])
    assert (REPO / args.config_file).is_file() and (REPO / args.training_script).is_file()
    expected = SCRIPTS[script]
    assert args.training_script_args == expected[expected.index("emoscale/train.py") + 1 :]
    added = args.training_script_args[
        len(TRAIN_ARGS) :
    ]  # what the script adds must be a config key
    load_config(overrides=added)
    if args.use_deepspeed:
        stage = 2 if "zero2" in script else 3
        check_deepspeed_launch(args, ZERO_SETUPS[f"zero{stage}.json"], mixed_precision="bf16")
    else:
        assert args.mixed_precision == "bf16" and args.num_processes == 1


@pytest.mark.parametrize(
    ("env", "nvidia_smi", "expected"),
    [
        ({"NUM_GPUS": "5"}, "exit 9", "5"),
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, "exit 9", "2"),
        ({}, "echo 'GPU 0: NVIDIA GeForce RTX 3090'; echo 'GPU 1: NVIDIA GeForce RTX 3090'", "2"),
        ({}, "echo 'NVIDIA-SMI has failed' >&2; exit 9", "1"),
    ],
    ids=["NUM_GPUS", "CUDA_VISIBLE_DEVICES", "nvidia-smi", "nvidia-smi-fails"],
)
def test_multi_gpu_scripts_count_gpus(env, nvidia_smi, expected, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "nvidia-smi", nvidia_smi)
    for script in ("multi_gpu_zero2.sh", "multi_gpu_zero3.sh"):
        done = run_script(
            LAUNCH / script,
            [],
            cwd=tmp_path,
            DRY_RUN="1",
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            **env,
        )
        assert done.returncode == 0, done.stderr
        command = shlex.split(done.stdout)
        assert command[command.index("--num_processes") + 1] == expected


def fake_cluster(tmp_path: Path) -> Path:
    """scontrol that knows two hosts, and srun that runs its command as node 0, then as node 1."""
    bin_dir = tmp_path / "bin"
    fake_command(
        bin_dir,
        "scontrol",
        '[[ "$1 $2 $3" == "show hostnames gpu-a[17-18]" ]] || exit 3\nprintf "gpu-a17\\ngpu-a18\\n"',
    )
    fake_command(
        bin_dir,
        "srun",
        'while [[ "$1" == -* ]]; do shift; done\n'
        'for node in 0 1; do SLURM_NODEID=$node SLURM_PROCID=$node "$@" || exit; done',
    )
    return bin_dir


SLURM_ENV = {"SLURM_NODEID": "1", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu-a[17-18]"}


def check_node_commands(lines: list[str]) -> None:
    assert len(lines) == 2
    for node, line in enumerate(lines):
        command = shlex.split(line.split(":", 1)[1])
        assert command[:2] == ["accelerate", "launch"]
        args = launch_command_parser().parse_args(command[2:])
        # The rank is the node's own SLURM_NODEID, read on that node (here 0, then 1), never the
        # batch script's value (1 in this environment).
        assert args.machine_rank == node
        assert args.main_process_ip == "gpu-a17"
        assert args.num_machines == 2
        assert args.num_processes == 16
        assert args.config_file == "accelerate_configs/two_nodes_8gpu_zero3.yaml"
        assert args.training_script == "emoscale/train.py"
        assert args.training_script_args == TRAIN_ARGS


def test_slurm_script_starts_one_launcher_per_node(tmp_path):
    bin_dir = fake_cluster(tmp_path)
    fake_command(
        bin_dir, "accelerate", 'echo "node $SLURM_NODEID: accelerate $(printf "%q " "$@")"'
    )
    path = f"{bin_dir}:{os.environ['PATH']}"
    done = run_script(LAUNCH / "slurm.sh", TRAIN_ARGS, cwd=tmp_path, PATH=path, **SLURM_ENV)
    assert done.returncode == 0, done.stderr
    check_node_commands(done.stdout.splitlines())


def test_slurm_script_dry_run(tmp_path):
    path = f"{fake_cluster(tmp_path)}:{os.environ['PATH']}"
    done = run_script(
        LAUNCH / "slurm.sh", TRAIN_ARGS, cwd=tmp_path, PATH=path, DRY_RUN="1", **SLURM_ENV
    )
    assert done.returncode == 0, done.stderr
    srun_line, *node_lines = done.stdout.splitlines()
    srun = shlex.split(srun_line)
    assert srun[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "bash"]
    # Still unexpanded: each node reads its own.
    assert srun[5].startswith('cmd=(accelerate launch --machine_rank "$SLURM_NODEID" "$@");')
    check_node_commands(node_lines)


def test_slurm_script_finds_the_repository_from_the_spool_copy(tmp_path):
    # sbatch runs a copy of the script from its spool folder: the root comes from SLURM_SUBMIT_DIR.
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "slurm_script").write_text((LAUNCH / "slurm.sh").read_text())
    path = f"{fake_cluster(tmp_path)}:{os.environ['PATH']}"
    env = SLURM_ENV | {"PATH": path, "DRY_RUN": "1"}
    done = run_script(
        spool / "slurm_script", TRAIN_ARGS, cwd=spool, SLURM_SUBMIT_DIR=str(REPO), **env
    )
    assert done.returncode == 0, done.stderr
    check_node_commands(done.stdout.splitlines()[1:])
    lost = run_script(
        spool / "slurm_script", TRAIN_ARGS, cwd=spool, SLURM_SUBMIT_DIR=str(spool), **env
    )
    assert lost.returncode == 2
    assert "emoscale repository not found" in lost.stderr


# --- real processes -------------------------------------------------------------------------------

PROBE = """
import gc, json, sys, torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs
from torch.utils.data import DataLoader, TensorDataset

micro_batch, grad_accum, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
accelerator = Accelerator(
    gradient_accumulation_steps=grad_accum, kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")]
)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Embedding(128, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
examples = TensorDataset(torch.arange(128), torch.arange(128) % 2)
loader = DataLoader(examples, batch_size=micro_batch)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
seen = []
for inputs, labels in loader:
    with accelerator.accumulate(model):
        accelerator.backward(torch.nn.functional.cross_entropy(model(inputs).float(), labels))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    seen += inputs.tolist()
result = {
    "num_processes": accelerator.num_processes,
    "distributed_type": str(accelerator.distributed_type),
    "seen": seen,
    "ds_config": accelerator.deepspeed_config,
    "stage": model.zero_optimization_stage(),
    "gathers_16bit_on_save": model.zero_gather_16bit_weights_on_model_save(),
    "optimizer": type(model.optimizer.optimizer).__name__,
    "engine_lr": model.get_lr(),
    "scheduler_lr": scheduler.get_last_lr(),
}
with open(f"{out}/rank{accelerator.process_index}.json", "w") as handle:
    json.dump(result, handle, default=str)
# Drop the engine before the process group goes: otherwise a gloo thread sometimes aborts the
# process at interpreter exit ("terminate called without an active exception") after a good run.
model = optimizer = scheduler = loader = None
accelerator.free_memory()
gc.collect()
accelerator.end_training()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "DS_"))}
    return (
        env
        | {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        | extra
    )


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("zero", sorted(ZERO_SETUPS))
def test_deepspeed_config_in_a_two_process_run(zero, tmp_path):
    """The CPU stand-in for a GPU run: what Accelerate and DeepSpeed make of each JSON in practice."""
    (tmp_path / "probe.py").write_text(PROBE)
    command = [
        ACCELERATE,
        "launch",
        "--num_processes",
        str(WORLD),
        "--main_process_port",
        str(free_port()),
        "--use_deepspeed",
        "--deepspeed_config_file",
        f"ds_configs/{zero}",
        "--mixed_precision",
        "bf16",
        str(tmp_path / "probe.py"),
        str(MICRO_BATCH),
        str(GRAD_ACCUM),
        str(tmp_path),
    ]
    done = subprocess.run(
        command,
        cwd=REPO,
        env=launch_env(DS_ACCELERATOR="cpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    expected = ZERO_SETUPS[zero]
    # Each rank trains on its own share of the data (ENVIRONMENT.md: without gloo both see all of it).
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == list(range(128))
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    for result in ranks:
        assert result["num_processes"] == WORLD
        assert result["distributed_type"] == "DistributedType.DEEPSPEED"
        config = flatten(result["ds_config"])
        assert config["train_micro_batch_size_per_gpu"] == MICRO_BATCH
        assert config["gradient_accumulation_steps"] == GRAD_ACCUM
        assert config["train_batch_size"] == MICRO_BATCH * GRAD_ACCUM * WORLD
        assert config["gradient_clipping"] == 1.0
        assert config["bf16.enabled"] is True and config["fp16.enabled"] is False
        assert result["stage"] == expected.stage
        assert result["gathers_16bit_on_save"] is expected.saves_16bit_weights
        # With optimizer offload Accelerate swaps the trainer's AdamW for DeepSpeedCPUAdam itself
        # (map_pytorch_optim_to_deepspeed); the param groups are shared, so the scheduler still rules.
        assert result["optimizer"] == (
            "DeepSpeedCPUAdam" if expected.offload_optimizer == "cpu" else "AdamW"
        )
        # 2 optimizer steps; a prepared scheduler steps once per process for each (see trainer.py).
        assert result["engine_lr"] == result["scheduler_lr"] == [1e-2 * 0.5 ** (2 * WORLD)]


# cpu_ddp / cpu_zero2 / cpu_zero3 train under the same entry point in tests/training/test_distributed.py
# (LoRA and P-Tuning v2 each, with sharding, coverage and reload checks): not repeated here.
TRAINER_SETUPS = {
    "cpu.yaml": (1, "DistributedType.NO", {}),
}


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAINER_SETUPS))
def test_trainer_runs_under_cpu_config(name, run_overrides, tmp_path):
    """`accelerate launch --config_file accelerate_configs/NAME emoscale/train.py` trains and saves."""
    from safetensors.torch import load_file

    processes, distributed_type, env = TRAINER_SETUPS[name]
    command = [
        ACCELERATE,
        "launch",
        "--config_file",
        f"accelerate_configs/{name}",
        "--main_process_port",
        str(free_port()),
        "emoscale/train.py",
        *run_overrides,
        "train.max_steps=4",
        "eval.every_steps=4",
    ]
    done = subprocess.run(
        command, cwd=REPO, env=launch_env(**env), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = tmp_path / "run"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["num_processes"] == processes
    assert run["distributed_type"] == distributed_type
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 96  # every example once, however many ranks
    # ZeRO-3 shards the weights: a save without stage3_gather_16bit_weights_on_model_save is empty.
    adapter = load_file(run_dir / "model" / "adapter_model.safetensors")
    assert adapter and all(t.numel() > 0 and t.isfinite().all() for t in adapter.values())
