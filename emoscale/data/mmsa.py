"""The `label.csv` of the MMSA releases (thuiar/MMSA) of CMU-MOSI and CH-SIMS: read by mosi.py and chsims.py.

One row per video clip with the columns `video_id, clip_id, text, label, label_T, label_A, label_V,
annotation, mode` (the order differs between releases, and MOSI's unimodal columns are empty):
`label` is the continuous multimodal sentiment score, `mode` the split (train/valid/test).
"""

from __future__ import annotations

import math
from pathlib import Path

from emoscale.data.encoding import read_text
from emoscale.data.examples import Example, check_text, check_unique_ids
from emoscale.data.generic import delimited_rows
from emoscale.data.layout import corpus_folder, require
from emoscale.errors import DataError

COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MODES = {"train": "train", "valid": "dev", "test": "test"}


def read_label_csv(data_config, corpus: str) -> tuple[Path, list[tuple[str, dict]]]:
    """The path of `label.csv` in data.path, and (where, row) for each clip; `where` is 'file:line'."""
    folder = corpus_folder(data_config)
    require(folder, ["label.csv"], corpus)
    path = folder / "label.csv"
    rows = delimited_rows(path, read_text(path))
    if not rows:
        raise DataError(f"{path}: no rows")
    fieldnames = list(rows[0][1])
    missing = [column for column in COLUMNS if column not in fieldnames]
    if missing:
        found = ",".join(fieldnames)
        raise DataError(f"{path}: expected MMSA's columns {','.join(COLUMNS)}; found {found[:120]}")
    return path, rows


def score(row: dict, where: str) -> float:
    try:
        value = float(row["label"])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{where}: label {row['label']!r} is not a number")
    return value


def example(row: dict, where: str, label: int) -> Example:
    """One clip; its video is its dialogue (the clips of one video are consecutive segments)."""
    video, clip = (row["video_id"] or "").strip(), (row["clip_id"] or "").strip()
    return Example(
        id=f"{video}_{clip}",
        text=check_text((row["text"] or "").strip(), where),
        label=label,
        dialogue_id=video,
        turn=int(clip) if clip.isdigit() else None,
    )


def split_of(row: dict, where: str) -> str:
    mode = (row["mode"] or "").strip()
    if mode not in MODES:
        raise DataError(f"{where}: mode {mode!r} is not one of {list(MODES)}")
    return MODES[mode]


def check_ids(splits: dict[str, list[Example]], path: Path) -> None:
    """Clip ids are unique across the whole file, not just within a split."""
    check_unique_ids([example for examples in splits.values() for example in examples], str(path))
