"""Any labelled text corpus as CSV, TSV or JSONL files: `train.*`, `dev.*` and `test.*` in data.path.

Columns are named by data.text_column / data.label_column / data.id_column; optional `speaker`,
`dialogue_id`, `turn`, `session` and `audio_path` columns are carried into the examples.
The label set is data.labels, or else the labels seen in train (in order of first appearance is
unstable across files, so sorted).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from emoscale.data.examples import (
    Corpus,
    CorpusInfo,
    Example,
    check_text,
    check_unique_ids,
    label_index,
)
from emoscale.data.layout import corpus_folder
from emoscale.errors import DataError

OPTIONAL_COLUMNS = ("speaker", "dialogue_id", "session", "audio_path")
SPLITS = ("train", "dev", "test")


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) pairs; `where` is 'file:line' for error messages."""
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line")
            rows.append((f"{path}:{number}", row))
        return rows
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        # DictReader's line_num counts physical lines, so quoted newlines still point at the right row.
        return [(f"{path}:{reader.line_num}", row) for row in reader]


def _check_columns(path: Path, rows: list[tuple[str, dict]], required: list[str]) -> None:
    if not rows:
        raise DataError(f"{path}: no rows")
    present = set(rows[0][1])
    for column in required:
        if column not in present:
            raise DataError(
                f"{path}: missing column {column!r} (columns: {', '.join(sorted(present))})"
            )


def _find(folder: Path, split: str, extension: str) -> Path:
    path = folder / f"{split}.{extension}"
    if not path.is_file():
        raise DataError(f"{folder}: expected {split}.{extension} (data.dataset={extension!r})")
    return path


def load(data_config) -> Corpus:
    folder = corpus_folder(data_config)
    text_column, label_column, id_column = (
        data_config.text_column,
        data_config.label_column,
        data_config.id_column,
    )
    required = [text_column, label_column] + ([id_column] if id_column else [])
    rows_by_split = {}
    for split in SPLITS:
        path = _find(folder, split, data_config.dataset)
        rows_by_split[split] = _rows(path)
        _check_columns(path, rows_by_split[split], required)

    label_names = tuple(
        data_config.labels
        or sorted({str(row[label_column]).strip() for _, row in rows_by_split["train"]})
    )
    splits = {}
    for split, rows in rows_by_split.items():
        examples = []
        for number, (where, row) in enumerate(rows):
            extra = {
                column: str(row[column])
                for column in OPTIONAL_COLUMNS
                if row.get(column) not in (None, "")
            }
            if row.get("turn") not in (None, ""):
                extra["turn"] = int(row["turn"])
            examples.append(
                Example(
                    id=str(row[id_column]) if id_column else f"{split}-{number}",
                    text=check_text(str(row[text_column] or ""), where),
                    label=label_index(str(row[label_column]).strip(), label_names, where),
                    **extra,
                )
            )
        check_unique_ids(examples, str(folder / f"{split}.{data_config.dataset}"))
        splits[split] = examples
    words = tuple(name[:1].upper() + name[1:] for name in label_names)
    return Corpus(CorpusInfo(data_config.dataset, label_names, words), splits)
