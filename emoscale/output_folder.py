"""Writing a whole new folder (a model, a converted checkpoint, a merged export) or nothing.

Every command that writes a model folder refuses an --out that already holds files (never overwrite
what emoscale did not write), writes into a temporary folder beside it and renames that at the end:
a refusal, a failure or a kill half-way leaves no half-written model that would load later, and
no parent folders made for it. Used by make-tiny, the tiny encoders, convert and export.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emoscale.errors import EmoscaleError

PROBE_PREFIX = ".emoscale-probe-"  # check_creatable's short-lived test folder


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
    check_creatable(out, what)


def nearest_existing(path: Path, what: str) -> Path:
    """`path` if it exists, else the nearest existing folder above it: where mkdir would start.
    The walk stops at a symbolic link that leads nowhere (to a missing path, or a loop): `exists()`
    is False for such a link, so stepping past it checked its parent, and mkdir then failed on the
    link with a traceback or a bare `File exists`. Every command that makes an output folder walks
    up through this one function."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            where = "is" if existing == path else f"is inside {existing},"
            target = os.readlink(existing)
            try:
                os.stat(existing)
                leads = f"a missing {target}"
            except OSError as error:
                loops = error.errno == errno.ELOOP
                leads = f"{target}, which loops" if loops else f"a missing {target}"
            raise EmoscaleError(f"{what} {path} {where} a symbolic link to {leads}")
        existing = existing.parent
    return existing


def check_creatable(path: Path, what: str) -> Path:
    """`path` (a folder or a file to be made) can be made: the nearest existing folder at or
    above it is a folder, not a file, and emoscale can write in it (tried with a short-lived
    folder: os.access says yes to root on a read-only mount). Returns that folder."""
    path = Path(path)
    existing = nearest_existing(path, what)
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise EmoscaleError(f"{what} {path} {where}, not a folder")
    try:
        tempfile.TemporaryDirectory(prefix=PROBE_PREFIX, dir=existing).cleanup()
    except OSError as error:
        raise EmoscaleError(
            f"{what} {path}: cannot write in {existing} ({error.strerror})"
        ) from None
    return existing


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
    target = _resolved(Path(target))
    for key, value in inputs.items():
        if value is None:
            continue
        source = _resolved(Path(value).expanduser())
        if target == source:
            return "is", key, value
        if source in target.parents:
            return "is inside", key, value
        if contains and target in source.parents:
            return "contains", key, value
    return None


def _resolved(path: Path) -> Path:
    """The path with links followed; a link that loops (resolve() raises on it, RuntimeError in
    Python 3.11) stays as written: its own check names it in one line."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))
