"""Any labelled text corpus as CSV, TSV or JSONL files: `train.*`, `dev.*` and `test.*` in data.path.

Columns are named by data.text_column / data.label_column / data.id_column; optional `speaker`,
`dialogue_id`, `turn`, `session` and `audio_path` columns are carried into the examples.
The label set is data.labels, or else the labels seen in train (in order of first appearance is
unstable across files, so sorted).

The files are read strictly (issue 12: malformed rows must not turn into classes): UTF-8 (a
byte-order mark is dropped) without NUL bytes, every CSV/TSV row with exactly the header's fields, every JSONL line one
object without repeated keys, a non-empty text and label in every row. CSV follows RFC 4180 (a
quoted field may hold commas, quotes as "" and line breaks; a quote left open is an error). TSV
has no quoting at all (the IANA definition): a `"` is an ordinary character, so a text starting
with one cannot swallow the rows after it. Labels lose surrounding spaces; two labels that differ
only in case are an error (they would be two classes with one label word). These label and turn checks are
data/columns.py's, shared with data.dataset=hf.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from emoscale.data.columns import clean_label, label_set, label_words, optional_fields
from emoscale.data.encoding import read_utf8
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

SPLITS = ("train", "dev", "test")
# Python's csv stops at 131,072 characters a field; a long text is truncated to data.max_length
# tokens and counted (run.json), so allow much longer ones; beyond this a field is surely a stray quote.
MAX_FIELD_CHARACTERS = 10_000_000


def _no_repeated_keys(path: Path, number: int):
    def build(pairs: list[tuple[str, object]]) -> dict:
        row: dict = {}
        for key, value in pairs:
            if key in row:
                raise DataError(f"{path}:{number}: key {key!r} appears twice")
            row[key] = value
        return row

    return build


def _not_json(path: Path, number: int):
    def refuse(constant: str):
        raise DataError(f"{path}:{number}: {constant} is not JSON (Python's json reads it)")

    return refuse


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(
                line,
                object_pairs_hook=_no_repeated_keys(path, number),
                parse_constant=_not_json(path, number),  # a text or label read as "nan"
            )
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line")
        rows.append((f"{path}:{number}", row))
    return rows


def delimited_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    """(where, row) for each row of a CSV (RFC 4180) or TSV (no quoting) text, strictly: every row
    has the header's number of fields, no column is named twice, a quote left open is an error.
    Also MELD's and MMSA's readers: csv.DictReader would pad a short row with None and keep a
    long row's extra fields under the key None."""
    tsv = path.suffix == ".tsv"
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {"delimiter": ","}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, **options)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARACTERS))
    rows, header = [], None
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: name the row's first line
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            if "unexpected end of data" in str(error):
                problem = "a quoted field is never closed"
            elif "field larger than field limit" in str(error):  # not a quoting problem
                problem = (
                    f"a field longer than {MAX_FIELD_CHARACTERS:,} characters (or a quote left "
                    "open that swallowed the rows after it)"
                )
            else:
                problem = f'malformed quoting ({error}); write a quote inside a quoted field as ""'
            raise DataError(f"{path}:{start}: {problem}") from None
        if not fields:  # a blank line
            continue
        if header is None:
            header = fields
            repeated = sorted({name for name in header if header.count(name) > 1})
            if repeated:
                raise DataError(f"{path}:{start}: column {repeated[0]!r} appears twice")
            continue
        if len(fields) != len(header):
            hint = "" if tsv else " (quote a text that holds a comma)"
            raise DataError(
                f"{path}:{start}: {len(fields)} fields, the header has {len(header)}{hint}"
            )
        rows.append((f"{path}:{start}", dict(zip(header, fields, strict=True))))
    return rows


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) pairs; `where` is 'file:line' for error messages."""
    text = read_utf8(path)
    return _jsonl_rows(path, text) if path.suffix == ".jsonl" else delimited_rows(path, text)


def _check_columns(path: Path, rows: list[tuple[str, dict]], required: list[str]) -> None:
    if not rows:
        raise DataError(f"{path}: no rows")
    for where, row in rows:  # JSONL rows may each have their own keys
        for column in required:
            if column not in row:
                raise DataError(
                    f"{where if path.suffix == '.jsonl' else path}: missing column {column!r} "
                    f"(columns: {', '.join(sorted(row))})"
                )


def _cell(row: dict, column: str, where: str) -> str:
    """A text or label value: a string (JSONL: also a number), never null, a list or a boolean."""
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: {column} is {json.dumps(value)}, expected a string")
    return str(value)


def _label(row: dict, column: str, where: str) -> str:
    return clean_label(_cell(row, column, where), where)


def _label_set(data_config, train_rows: list[tuple[str, dict]]) -> tuple[str, ...]:
    if data_config.labels:
        return tuple(data_config.labels)  # duplicates and case twins: config/rules.py
    column = data_config.label_column
    return label_set((where, _label(row, column, where)) for where, row in train_rows)


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
    rows_by_split, sources = {}, {}
    for split in SPLITS:
        path = sources[split] = _find(folder, split, data_config.dataset)
        rows_by_split[split] = _rows(path)
        _check_columns(path, rows_by_split[split], required)

    label_names = _label_set(data_config, rows_by_split["train"])
    splits = {}
    for split, rows in rows_by_split.items():
        examples = []
        for number, (where, row) in enumerate(rows):
            extra = optional_fields(row, where)
            examples.append(
                Example(
                    id=_cell(row, id_column, where) if id_column else f"{split}-{number}",
                    text=check_text(_cell(row, text_column, where), where),
                    label=label_index(_label(row, label_column, where), label_names, where),
                    **extra,
                )
            )
        check_unique_ids(examples, str(folder / f"{split}.{data_config.dataset}"))
        splits[split] = examples
    info = CorpusInfo(data_config.dataset, label_names, label_words(label_names))
    return Corpus(info, splits, sources=sources)
