"""What a checkpoint must remember besides weights, optimizer, scheduler and RNG, and its strict
reader: a hand-edited or damaged progress.json is one line naming the file and key before the model
loads. json.loads took a repeated key silently (the last `step` won: the run retrained steps and
pruned the checkpoints it had), and a missing or extra key was a TypeError traceback."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from emoscale.data.encoding import read_json
from emoscale.errors import DataError


@dataclass
class Progress:
    """What a checkpoint must remember besides weights, optimizer, scheduler and RNG."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of `epoch` already trained on
    best_metric: float = -math.inf
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    loss_sum: float = 0.0  # training loss since the last log line, so a resume logs the same mean
    loss_count: int = 0
    term_sums: dict = field(default_factory=dict)  # the family's named loss terms, summed likewise
    skipped_nonfinite: int = 0  # batches skipped for a nan/inf loss (train.skip_nonfinite)
    history: list = field(
        default_factory=list
    )  # {"step", "train_loss"} and {"step", "dev"} records


COUNTS = ("step", "epoch", "batches_in_epoch", "evals_without_improvement", "loss_count",
          "skipped_nonfinite")  # fmt: skip
NEEDED = ("step",)  # the rest has defaults


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problem(key: str, value: object) -> str | None:
    """What is wrong with one key's value, or None."""
    if key in COUNTS:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return "expected a whole number of at least 0"
    elif key == "best_metric":  # -Infinity until the first dev evaluation
        if not _number(value) or math.isnan(value) or value == math.inf:
            return "expected a number or -Infinity"
    elif key == "loss_sum":
        if not _number(value) or not math.isfinite(value):
            return "expected a finite number"
    elif key == "best_checkpoint":
        if value is not None and not isinstance(value, str):
            return "expected a checkpoint name or null"
    elif key == "term_sums":
        if not isinstance(value, dict) or not all(_number(item) for item in value.values()):
            return "expected an object of numbers"
    elif key == "history":
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return "expected a list of objects"
    return None


def read(path: Path) -> Progress:
    """A checkpoint's progress.json: strict JSON (no repeated key), an object with the keys
    Progress holds (the step at least), each of its type."""
    record = read_json(path, finite=False)  # best_metric is -Infinity before any evaluation
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected an object with the step and epoch, got {_kind(record)}")
    known = {item.name for item in fields(Progress)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise DataError(
            f"{path}: unknown key {unknown[0]!r}; a progress record holds {sorted(known)}"
        )
    missing = [key for key in NEEDED if key not in record]
    if missing:
        raise DataError(f"{path}: key {missing[0]!r} is missing")
    for key, value in record.items():
        problem = _problem(key, value)
        if problem:
            raise DataError(f"{path}: key {key!r} is {_shown(value)}, {problem}")
    return Progress(**record)


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), "a number")


def _shown(value: object) -> str:
    text = repr(value) if not isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
