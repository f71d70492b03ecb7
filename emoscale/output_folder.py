"""Writing a whole new folder (a model, a converted checkpoint, a merged export) or nothing.

Every command that writes a model folder refuses an --out that already holds files (never overwrite
what emoscale did not write), writes into a temporary folder beside it and renames that at the end:
a refusal, a failure or a kill half-way leaves no half-written model that would load later, and
no parent folders made for it. Used by make-tiny, the tiny encoders, convert and export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emoscale.errors import EmoscaleError


def refuse_existing(out: Path, what: str) -> None:
    """One line if `out` is a file or a folder with anything in it; an empty folder is fine. Also
    refused up front, before any work: a symbolic link (the folder is renamed into place, which
    would replace the link, not fill its target: give the target's own path), and a path below a
    file or in a folder emoscale cannot write in (they failed with a traceback at the end)."""
    if out.is_symlink():
        raise EmoscaleError(
            f"{what} {out} is a symbolic link (to {os.readlink(out)}); give the folder's own path"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EmoscaleError(f"{what} {out} exists and is not empty")
    existing = out.absolute().parent
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it with a traceback
            raise EmoscaleError(
                f"{what} {out} is inside {existing}, a symbolic link to a missing "
                f"{os.readlink(existing)}"
            )
        existing = existing.parent
    if not existing.is_dir():
        raise EmoscaleError(f"{what} {out} is inside {existing}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EmoscaleError(f"{what} {out}: cannot write in {existing} (permission denied)")


@contextmanager
def new_folder(out: Path, what: str) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; when the block ends, it becomes `out`.

    `what` starts the refusal, e.g. "make-tiny: --out". On an error in the block the temporary
    folder and any parent folders made for it are removed, and the error goes on.
    """
    out = Path(out)
    refuse_existing(out, what)
    made = []  # the folders above `out` that mkdir makes, deepest first
    parent = out.parent.absolute()
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    finished = False
    try:
        yield work
        refuse_existing(out, what)  # something may have been put there meanwhile
        if out.exists():
            out.rmdir()  # empty (checked just now)
        work.rename(out)
        finished = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for folder in made if not finished else ():
            try:
                folder.rmdir()
            except OSError:  # something else was put there meanwhile: not ours to remove
                break


def overlap_with_inputs(
    target: Path, inputs: dict[str, str | None], contains: bool = True
) -> tuple[str, str, str] | None:
    """The first input folder (config key -> path) that `target` is, is inside, or (with
    `contains`) contains:
    (relation, key, path as given), or None. Both sides resolved, so links count where they lead;
    `target` as it will be written (a `~` in it is a folder named so), the inputs as read."""
    target = Path(target).resolve()
    for key, value in inputs.items():
        if value is None:
            continue
        source = Path(value).expanduser().resolve()
        if target == source:
            return "is", key, value
        if source in target.parents:
            return "is inside", key, value
        if contains and target in source.parents:
            return "contains", key, value
    return None
