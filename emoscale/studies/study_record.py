"""What a study's parent folder holds besides its runs, so that separate processes (parallel
points, SLURM array tasks, a later `--status`) can share it without racing.

    <parent>/study.json            kind (cv|sweep), base config and overrides, each point's overrides,
                                   what the summary needs (title, grid), the SLURM jobs submitted
    <parent>/points/<name>.json    one point's state: running (host, pid), done or failed (exit code,
                                   the last line of its log); written by the point's own process
    <parent>/logs/<name>.log       the point's training output
    <parent>/.study.lock           flock held while study.json or the summary is written

Every file is written to a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emoscale.data.encoding import read_json
from emoscale.errors import DataError, EmoscaleError
from emoscale.evaluation.metrics import HEADLINE

RECORD = "study.json"


def write_json(path: Path, value: dict) -> None:
    """Atomic: a temporary file named after this host and process, then a rename."""
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=2))
    os.replace(temporary, path)


def write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@contextmanager
def locked(parent: Path) -> Iterator[None]:
    """One writer at a time for study.json and the summary (every process of every point)."""
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / ".study.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read(parent: Path, kind: str | None = None) -> dict:
    """The study record; with `kind`, refuses another kind of study's folder."""
    path = Path(parent) / RECORD
    if not path.is_file():
        raise EmoscaleError(f"{parent} is not a study's parent folder (no {RECORD})")
    record = _load(path)
    if kind is not None and record["kind"] != kind:
        raise EmoscaleError(
            f"{parent} holds a {record['kind']} study, not a {kind}; "
            f"use emoscale {record['kind']} --status {parent}"
        )
    return record


def _load(path: Path) -> dict:
    """study.json, strictly: emoscale writes it whole (a temporary name, then a rename), so a
    file that does not parse, or holds no kind, config, overrides and points, was written or
    edited by hand: one line, not a traceback on every rerun and --status."""
    try:
        record = read_json(path)
    except DataError as error:
        raise EmoscaleError(
            f"{error}; remove the folder's study.json or choose a new output_dir"
        ) from None
    fields = {"kind": str, "config": (str, type(None)), "overrides": list, "points": list}
    if not isinstance(record, dict) or not all(
        isinstance(record.get(key), kinds) for key, kinds in fields.items()
    ):
        raise EmoscaleError(
            f"{path}: not a study record emoscale wrote (expected an object with kind, config, "
            "overrides and points); remove it or choose a new output_dir"
        )
    return record


def read_run_metrics(run_dir: Path) -> dict:
    """A finished point's metrics.json for a cv/sweep summary: read strictly as report reads it
    (a damaged file, a non-finite number or a metric that is not a number is one line naming the
    file and key), and holding both dev and test results."""
    from emoscale.studies.report import read_metrics

    path = Path(run_dir) / "metrics.json"
    metrics = read_metrics(run_dir)
    if not all(isinstance(metrics.get(split), dict) for split in ("dev", "test")):
        raise DataError(f"{path}: expected a JSON object with dev and test results")
    for split in ("dev", "test"):  # the summary tables read every headline metric of both
        missing = [key for key in HEADLINE if key not in metrics[split]]
        if missing:
            raise DataError(
                f"{path}: {split} has no {', '.join(missing)}; expected {', '.join(HEADLINE)}"
            )
    return metrics


def _base(record: dict) -> tuple:
    """What makes two studies the same study: kind, base config file and base overrides (the
    parent folder's own name aside: it may be written relative or absolute)."""
    overrides = [item for item in record["overrides"] if not item.startswith("output_dir=")]
    config = str(Path(record["config"]).resolve()) if record["config"] else None
    return record["kind"], config, overrides


def write_summary_files(parent: Path, stem: str, summary: dict, table: str) -> None:
    """<stem>.json and <stem>.md together: parallel points may finish at the same moment."""
    with locked(parent):
        write_json(parent / f"{stem}.json", summary)
        write_text(parent / f"{stem}.md", table)


def refuse_another(parent: Path, record: dict) -> dict:
    """The parent's earlier record (or {}), unless it is another study's: then one line."""
    path = Path(parent) / RECORD
    if not path.is_file():
        return {}
    earlier = _load(path)
    if _base(earlier) != _base(record):
        kind, config, overrides = _base(earlier)
        raise EmoscaleError(
            f"output_dir {parent} holds another study ({kind} of "
            f"{config or 'no config file'} with {' '.join(overrides) or 'no overrides'}); "
            "choose a new output_dir"
        )
    return earlier


def claim(parent: Path, record: dict) -> dict:
    """Write the study record, or refuse a parent folder that holds another study. A rerun of the
    same study keeps its submitted jobs; a changed grid or fold list replaces the point list."""
    parent = Path(parent)
    with locked(parent):
        if (parent / RECORD).is_file():
            earlier = refuse_another(parent, record)
            record = {**record, "jobs": earlier.get("jobs", [])}
        write_json(parent / RECORD, record)
    return record


def add_job(parent: Path, job: dict) -> None:
    with locked(parent):
        record = _load(parent / RECORD)
        record.setdefault("jobs", []).append(job)
        write_json(parent / RECORD, record)


def point(record: dict, name: str) -> dict:
    for entry in record["points"]:
        if entry["name"] == name:
            return entry
    raise EmoscaleError(f"the study has no point {name!r}")


def write_state(parent: Path, name: str, state: dict) -> None:
    (Path(parent) / "points").mkdir(exist_ok=True)
    write_json(Path(parent) / "points" / f"{name}.json", state)


def read_state(parent: Path, name: str) -> dict | None:
    path = Path(parent) / "points" / f"{name}.json"
    return read_json(path) if path.is_file() else None


def last_line(log: Path) -> str:
    """The last non-empty line of a log (a failed run's `error: ...` or traceback's last line)."""
    if not log.is_file():
        return "(no log)"
    with open(log, "rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - 8192))
        lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "(empty log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
