"""The one way emoscale deletes anything: `remove_own`, which refuses what emoscale did not write.

Issue 12: a run folder check once let `output_dir=~/thesis` lose the user's files. Every delete
(a fresh start over a run, `--overwrite`, old checkpoints, a checkpoint save's leftovers) goes
through here, and is refused unless the path lies inside a folder emoscale writes (a run folder:
one of its own names, run_folder.OWN_NAMES) and is neither a link leading out of it nor the
folder itself. A symlink is removed as a link; what it points at is never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from emoscale.errors import EmoscaleError

# What a run folder holds (run_folder.py lists each); checkpoints/ holds step-N, .step-N.tmp, latest.
OWN_NAMES = frozenset(
    {
        "config.yaml",
        "run.json",
        "corpus.json",
        "metrics.json",
        "predictions.jsonl",
        "report.md",
        "confusion_matrix.png",
        "curves.png",
        "history.jsonl",
        "model",
        "checkpoints",
        "tensorboard",
        ".emoscale-run",  # the mark that emoscale made the folder (run_folder.MARK)
    }
)


def is_own(path: Path, run_dir: Path) -> bool:
    """Whether `path` is something emoscale writes in the run folder `run_dir` (not run_dir itself)."""
    try:
        relative = Path(path).absolute().relative_to(Path(run_dir).absolute())
    except ValueError:
        return False
    if not relative.parts or ".." in relative.parts or relative.parts[0] not in OWN_NAMES:
        return False
    # No link on the way: a `checkpoints` that links to the user's folder is not ours to empty.
    above = Path(run_dir).absolute()
    for part in relative.parts[:-1]:
        above = above / part
        if above.is_symlink():
            return False
    return True


def remove_own(path: Path, run_dir: Path, missing_ok: bool = True) -> None:
    """Delete `path`, a file or folder emoscale wrote in run folder `run_dir`; refuse anything else."""
    path = Path(path)
    if not is_own(path, run_dir):
        raise EmoscaleError(
            f"refusing to delete {path}: emoscale deletes only what it wrote in a run folder"
        )
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=missing_ok)
    elif path.is_dir():
        shutil.rmtree(path)
    elif not missing_ok:
        raise FileNotFoundError(path)
