"""Checkpoints that a kill cannot corrupt: write to a hidden temporary folder, fsync, rename, then
move the `latest` pointer. A save killed half-way leaves only a `.tmp` folder that nothing reads,
and the previous checkpoint stays intact. The newest `keep` checkpoints and the best are kept.

Layout: <run>/checkpoints/step-00000040/ (accelerator.save_state + progress.json), <run>/checkpoints/latest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from emoscale.errors import EmoscaleError

PREFIX = "step-"


def folder_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


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


def save(accelerator: Accelerator, run_dir: Path, step: int, progress: dict, keep: int) -> str:
    root = run_dir / "checkpoints"
    final, temporary = root / folder_name(step), root / f".{folder_name(step)}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)  # left by a save that was killed
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(temporary))
    except OSError as error:
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
        raise EmoscaleError(
            f"saving checkpoint {final} failed ({error.strerror or error}); the previous checkpoint is intact"
        ) from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temporary / "progress.json").write_text(json.dumps(progress))
        _fsync_tree(temporary)
        if final.exists():  # the same step saved twice (e.g. a resumed run): replace it whole
            shutil.rmtree(final)
        os.replace(temporary, final)
        _write_atomically(root / "latest", final.name)
        _prune(root, keep, progress.get("best_checkpoint"))
    accelerator.wait_for_everyone()
    return final.name


def _prune(root: Path, keep: int, best: str | None) -> None:
    saved = sorted(
        path for path in root.iterdir() if path.is_dir() and path.name.startswith(PREFIX)
    )
    for path in saved[:-keep]:
        if path.name != best:
            shutil.rmtree(path)


def latest(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text().strip()
    return folder if folder.is_dir() else None


def load(accelerator: Accelerator, folder: Path) -> dict:
    accelerator.load_state(str(folder))
    return json.loads((folder / "progress.json").read_text())


def load_latest(accelerator: Accelerator, run_dir: Path) -> dict:
    folder = latest(run_dir)
    if folder is None:
        raise EmoscaleError(f"--resume: {run_dir} has no checkpoint to resume from")
    return load(accelerator, folder)
