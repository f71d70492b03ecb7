"""Checkpoints that a kill cannot corrupt and a resume continues exactly.

A save writes a hidden temporary folder, fsyncs it, renames it, then moves the `latest` pointer:
a save killed half-way (or one that runs out of disk) leaves only a `.tmp` folder that nothing
reads, and the previous checkpoint stays intact. The newest `keep` checkpoints and the best are kept.

What a checkpoint holds (issue 6): the *trainable* tensors only (LoRA, prefixes, classifier heads,
plus buffers such as MINE's moving average), never the frozen base model, which `--resume` reloads
from model.path; then optimizer, scheduler, every rank's RNG states and `progress.json` (step,
epoch, batches already trained on in that epoch, best metric, history). Under DeepSpeed the engine
writes its own shards in its own format; there `exclude_frozen_parameters` keeps the base out.

Layout: <run>/checkpoints/step-00000040/ (model.safetensors, optimizer.bin, scheduler.bin,
random_states_<rank>.pkl, progress.json; DeepSpeed: pytorch_model/ shards), <run>/checkpoints/latest.
"""

from __future__ import annotations

import json
import os
import weakref
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from accelerate.utils import load as load_safely  # torch.load(weights_only=True) + numpy
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from emoscale.errors import DataError, EmoscaleError, reason
from emoscale.training import removal
from emoscale.training.progress import read as read_progress

PREFIX = "step-"
# What a failing write raises: OSError from Python, RuntimeError from torch.save's C++ writer,
# SafetensorError from safetensors' Rust one (EFBIG/ENOSPC surface as any of the three).
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


def folder_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


# --- only trainable tensors in a checkpoint ---------------------------------------------------


def _trained(model: torch.nn.Module) -> set[str]:
    """The state-dict names a checkpoint keeps: trainable parameters and buffers. Not the frozen
    base, nor the quantisation state bitsandbytes adds to a 4-bit/8-bit base's state dict."""
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    return names | {name for name, _ in model.named_buffers(remove_duplicate=False)}


def _drop_frozen(models: list, weights: list, output_dir: str) -> None:
    """save_state pre-hook: the state dicts about to be written keep the trained tensors only."""
    for model, state in zip(models, weights, strict=False):  # DeepSpeed: `weights` is empty
        for name in set(state) - _trained(model):
            del state[name]


def _load_trained(models: list, input_dir: str) -> None:
    """load_state pre-hook: load what _drop_frozen kept (non-strict) and take the models off
    Accelerate's list, whose own loader is strict and would miss the frozen weights."""
    for index, model in enumerate(models):
        name = "model.safetensors" if index == 0 else f"model_{index}.safetensors"
        state = load_file(str(Path(input_dir) / name))
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        lost = sorted((_trained(model) & set(model.state_dict())) - set(state))
        if unexpected or lost:
            problem = "does not fit the model" if unexpected else "lacks the trained tensor"
            raise EmoscaleError(f"checkpoint {input_dir} {problem} {(unexpected or lost)[0]!r}")
    models.clear()


_hooked: weakref.WeakSet = weakref.WeakSet()


def _install_hooks(accelerator: Accelerator) -> None:
    if accelerator not in _hooked:
        accelerator.register_save_state_pre_hook(_drop_frozen)
        accelerator.register_load_state_pre_hook(_load_trained)
        _hooked.add(accelerator)


def _deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


# --- save -------------------------------------------------------------------------------------


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _any_rank(accelerator: Accelerator, flag: bool) -> bool:
    """True on every rank when `flag` is true on one: ranks must take the same branch."""
    if accelerator.num_processes == 1:
        return flag
    flags = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(flags, "sum").item() > 0)


def _reason(error: Exception, folder: Path) -> str:
    """The OS's words for a failed write. torch.save's C++ writer only says "unexpected pos ...",
    so a 1 MiB probe write asks the file system what is wrong (ENOSPC, EFBIG, EDQUOT ...)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    probe = folder / ".write-probe"
    try:
        with open(probe, "wb") as handle:
            handle.write(bytes(1 << 20))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as failed:
        if failed.strerror:
            return failed.strerror
    finally:
        removal.remove_own(probe, folder.parent)
    return reason(error)


def save(accelerator: Accelerator, run_dir: Path, step: int, progress: dict, keep: int) -> str:
    """Write checkpoint `step` atomically on all ranks; returns its folder name. A failed write
    (disk full ...) raises one line on every rank and leaves the previous checkpoint as it was."""
    _install_hooks(accelerator)
    root = run_dir / "checkpoints"
    final, temporary = root / folder_name(step), root / f".{folder_name(step)}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        removal.remove_own(temporary, run_dir)  # left by a save that was killed
    accelerator.wait_for_everyone()
    failure = None
    try:
        kwargs = {"exclude_frozen_parameters": True} if _deepspeed(accelerator) else {}
        accelerator.save_state(str(temporary), **kwargs)
    except WRITE_ERRORS as error:
        failure = error
    if not _any_rank(accelerator, failure is not None) and accelerator.is_main_process:
        try:
            (temporary / "progress.json").write_text(json.dumps(progress))
            _fsync_tree(temporary)
            if final.exists():  # the same step saved twice (e.g. a resumed run): replace it whole
                removal.remove_own(final, run_dir)
            os.replace(temporary, final)
            _write_atomically(root / "latest", final.name)
        except OSError as error:
            failure = error
    if _any_rank(accelerator, failure is not None):
        reason = _reason(failure, root) if failure is not None else "on another rank"
        if accelerator.is_main_process:
            removal.remove_own(temporary, run_dir)
        previous = latest(run_dir)
        raise EmoscaleError(
            f"saving checkpoint {final} failed ({reason}); "
            + (
                f"the latest checkpoint, {previous.name}, is intact"
                if previous
                else "none saved yet"
            )
        )
    if accelerator.is_main_process:
        _prune(root, keep, progress.get("best_checkpoint"))
    accelerator.wait_for_everyone()
    return final.name


def saved(run_dir: Path) -> list[Path]:
    """The checkpoint folders on disk, oldest first (whatever `latest` says)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if path.is_dir() and path.name.startswith(PREFIX))


def _prune(root: Path, keep: int, best: str | None) -> None:
    """Old checkpoints beyond `keep`, never the best on dev."""
    for path in saved(root.parent)[:-keep]:
        if path.name != best:
            removal.remove_own(path, root.parent)


# --- load -------------------------------------------------------------------------------------


def latest(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    # Only the plain name of a checkpoint beside it: a hand-edited `../../x` resumed from a folder
    # outside the run, and bytes that are not text were a UnicodeDecodeError traceback.
    name = pointer.read_bytes().decode("utf-8", errors="replace").strip()
    folder = run_dir / "checkpoints" / name
    return folder if folder in saved(run_dir) else None


def _damaged(folder: Path, error: Exception, file: Path | None = None) -> EmoscaleError:
    where = f"{folder}" + (f" ({file.relative_to(folder)})" if file else "")
    missing = getattr(error, "filename", None) if isinstance(error, FileNotFoundError) else None
    what = (  # the missing file's name, not a path cut off at the limit
        f"{Path(missing).name} is missing"
        if missing
        else f"{type(error).__name__}: {reason(error, 120)}"
    )
    return EmoscaleError(
        f"checkpoint {where} is damaged ({what}); "
        "resume from an earlier one by pointing checkpoints/latest at it, or pass --overwrite"
    )


def _damaged_record(folder: Path, error: DataError) -> EmoscaleError:
    return EmoscaleError(
        f"{error}; resume from an earlier checkpoint by pointing checkpoints/latest at it, or "
        "pass --overwrite"
    )


# What accelerator.save_state writes for one model, optimizer and scheduler (rank 0's RNG; the
# others' random_states_<rank>.pkl beside it). DeepSpeed writes a folder of its own shards instead.
ACCELERATE_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")
ZIP_START = b"PK\x03\x04"  # torch.save's default format; the legacy one is not a zip archive


def check_readable(folder: Path) -> None:
    """Before the model loads (minutes for a large one): progress.json parses, every safetensors
    header fits its file, every torch.save zip archive (.bin/.pt/.pkl) has its central directory,
    which a truncated file lacks. Files in torch's legacy format (DeepSpeed with
    `checkpoint_serialization: false`) are left to `load`, as is damage inside the tensors."""
    if not any(path.is_dir() for path in folder.iterdir()):  # Accelerate's format, not DeepSpeed's
        for name in ACCELERATE_FILES:
            if not (folder / name).is_file():
                raise _damaged(folder, FileNotFoundError(2, "missing", name))
    for path in [folder / "progress.json", *sorted(folder.rglob("*"))]:
        try:
            if path.name == "progress.json":
                read_progress(path)
            elif path.suffix == ".safetensors":
                with safe_open(path, "pt"):
                    pass
            elif path.suffix in (".bin", ".pt", ".pkl") and path.is_file():
                with open(path, "rb") as handle:
                    start = handle.read(4)
                if start == ZIP_START:
                    with zipfile.ZipFile(path):
                        pass
                elif not start.startswith(b"\x80"):  # the legacy format is a pickle stream
                    raise ValueError(f"{len(start)} bytes of neither a zip archive nor a pickle")
        except DataError as error:  # progress.json: its own line names the file and key
            raise _damaged_record(folder, error) from None
        except Exception as error:  # noqa: BLE001 (safetensors and zipfile raise their own)
            raise _damaged(folder, error, path) from None


def load(accelerator: Accelerator, folder: Path) -> dict:
    """Restore weights, optimizer, scheduler and RNG (Accelerate reads its .bin/.pkl files with
    torch.load(weights_only=True); DeepSpeed's own shards it reads with weights_only=False)."""
    _install_hooks(accelerator)
    kwargs = {"load_module_strict": False} if _deepspeed(accelerator) else {}
    try:  # a truncated or corrupt file is one line naming the checkpoint (issue 12)
        record = asdict(read_progress(folder / "progress.json"))
        accelerator.load_state(str(folder), **kwargs)
    except DataError as error:
        raise _damaged_record(folder, error) from None
    except EmoscaleError:
        raise
    except Exception as error:  # noqa: BLE001 (torch, safetensors and pickle each raise their own)
        raise _damaged(folder, error) from None
    # Accelerate logs a failed RNG restore at info level and goes on; a resume would then differ.
    saved = load_safely(folder / f"random_states_{accelerator.process_index}.pkl")
    if not torch.equal(torch.get_rng_state(), saved["torch_manual_seed"]):
        raise EmoscaleError(f"checkpoint {folder}: its RNG state could not be restored")
    return record


def load_latest(accelerator: Accelerator, run_dir: Path) -> dict:
    folder = latest(run_dir)
    if folder is None:
        raise EmoscaleError(f"--resume: {run_dir} has no checkpoint to resume from")
    return load(accelerator, folder)
