"""Any Hugging Face `datasets` folder as a corpus (data.dataset=hf, data.path=the folder).

The folder is read in whichever of these layouts it has (found, not configured):
- a DatasetDict written by `save_to_disk` (`dataset_dict.json` plus one folder per split);
- files per split, `<split>.parquet`, `<split>.arrow` or `<split>.jsonl`, or shards
  `<split>-00000-of-00002.parquet` ..., in the folder or in its `data/` (the Hub's layout).
Splits: train, dev (also named `validation` or `valid`) and test; other splits are ignored.

Columns are the generic CSV loader's (data/generic.py): data.text_column, data.label_column,
data.id_column, and optional speaker, dialogue_id, session, audio_path and turn. The label column
may hold strings, integers (read as their decimal strings, "0", "1", ...) or a ClassLabel, whose
names become the label names in the dataset's own order. data.labels, when set, overrides either
(a ClassLabel is then matched by name). Errors name the split's path and the row as `path[i]`,
0-based, as `dataset[i]` indexes it. Labels and turns pass generic.py's checks (data/columns.py):
no empty label, no two labels that differ only in case, a turn is a whole number >= 0. Nothing is copied: save_to_disk and Arrow files are
memory-mapped, Parquet and JSONL read with pyarrow, never into the Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path

from emoscale.data.columns import (
    OPTIONAL_COLUMNS,
    clean_label,
    label_set,
    label_words,
    optional_fields,
)
from emoscale.data.examples import (
    Corpus,
    CorpusInfo,
    Example,
    check_text,
    check_unique_ids,
    label_index,
)
from emoscale.data.layout import corpus_folder, listing
from emoscale.errors import DataError, reason

SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "validation", "valid"), "test": ("test",)}
FILE_FORMATS = ("parquet", "arrow", "jsonl")


def _split_name(available: list[str], split: str, folder: Path, found: str) -> str:
    for name in SPLIT_NAMES[split]:
        if name in available:
            return name
    names = " or ".join(SPLIT_NAMES[split])
    raise DataError(f"{folder}: no {split} split (named {names}); found {found}")


def _saved_dataset_dict(folder: Path) -> dict:
    """split -> (where, Dataset) from a save_to_disk folder, memory-mapped."""
    import datasets

    try:
        saved = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as error:  # a split folder or JSON file missing or broken
        raise DataError(f"{folder}: not a readable save_to_disk folder ({reason(error)})") from None
    available = sorted(saved)
    by_split = {}
    for split in SPLIT_NAMES:
        name = _split_name(available, split, folder, found=", ".join(available))
        by_split[split] = (str(folder / name), saved[name])
    return by_split


def _split_files(folder: Path, name: str) -> list[Path]:
    """The files of split `name`: `name.ext` or its shards `name-*.ext`, here or under data/."""
    files = []
    for where in (folder, folder / "data"):
        for extension in FILE_FORMATS:
            files += [where / f"{name}.{extension}"] + sorted(where.glob(f"{name}-*.{extension}"))
    files = [path for path in files if path.is_file()]
    if len({path.suffix for path in files}) > 1:
        raise DataError(
            f"{folder}: split {name!r} is in several formats ({', '.join(path.name for path in files)}); keep one"
        )
    return files


def _read_table(path: Path):
    """One file as a pyarrow Table, its Hugging Face features (ClassLabel ...) kept in the schema."""
    import pyarrow as pa

    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if path.suffix == ".jsonl":
            import pyarrow.json

            return pyarrow.json.read_json(path)
        source = pa.memory_map(str(path))  # left open: the table's buffers are the mapped file
        try:
            return pa.ipc.open_stream(source).read_all()  # what datasets writes
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all()  # pyarrow's file format (Feather v2)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(
            f"{path}: not a readable {path.suffix[1:]} file ({reason(error)})"
        ) from None


def _split_files_dict(folder: Path) -> dict:
    """split -> (where, Dataset) from per-split Parquet/Arrow/JSONL files."""
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    files_by_split = {}
    for split, names in SPLIT_NAMES.items():  # every split found before any file is read
        for name in names:
            files_by_split[split] = (name, _split_files(folder, name))
            if files_by_split[split][1]:
                break
        else:
            expected = " or ".join(f"{name}.{{parquet,arrow,jsonl}}" for name in names)
            raise DataError(f"{folder}: expected {expected}; found {listing(folder)}")
    by_split = {}
    for split, (name, files) in files_by_split.items():
        try:
            table = pa.concat_tables([_read_table(path) for path in files])
        except pa.ArrowInvalid:
            raise DataError(
                f"{files[0].parent}: the shards of {name!r} differ in columns"
            ) from None
        where = str(files[0]) if len(files) == 1 else f"{files[0].parent / name}-*"
        by_split[split] = (where, datasets.Dataset(InMemoryTable(table)))
    return by_split


def _column_kind(features, column: str, where: str, role: str) -> str:
    """'classlabel', 'string' or 'int'; anything else is the one-line wrong-type error."""
    import datasets

    feature = features[column]
    if isinstance(feature, datasets.ClassLabel):
        kind, held = "classlabel", "a ClassLabel"
    else:
        held = getattr(feature, "dtype", type(feature).__name__)  # int64, float32, List ...
        kind = {"string": "string", "large_string": "string"}.get(held, held)
        if held.startswith(("int", "uint")):
            kind = "int"
    allowed = ("string",) if role == "text" else ("string", "int", "classlabel")
    if kind not in allowed:
        expected = "strings" if role == "text" else "strings, integers or a ClassLabel"
        raise DataError(f"{where}: {role} column {column!r} holds {held}; expected {expected}")
    return kind


def _label_strings(values: list, features, column: str, where: str) -> list[str]:
    """Every label as a string: a ClassLabel's name, an integer's decimal form (data/columns.py's
    rules: no empty label)."""
    feature = features[column]
    names = getattr(feature, "names", None)
    labels = []
    for row, value in enumerate(values):
        if value is None or (names is not None and value == -1):
            raise DataError(f"{where}[{row}]: no label (every example needs one to train or score)")
        labels.append(
            names[value] if names is not None else clean_label(str(value), f"{where}[{row}]")
        )
    return labels


def _default_label_names(
    train_labels: list[str], train_features, column: str, where: str
) -> tuple[str, ...]:
    names = getattr(train_features[column], "names", None)
    if names is not None:  # the dataset declares its order (ClassLabel ids): keep it
        named = [
            (f"{where}: ClassLabel {column!r} name {index}", name)
            for index, name in enumerate(names)
        ]
        label_set((at, clean_label(name, at)) for at, name in named)  # no '' or case twins
        return tuple(names)
    if all(label.lstrip("-").isdigit() for label in train_labels):
        return tuple(sorted(set(train_labels), key=int))  # "2" < "10"
    return label_set((f"{where}[{row}]", label) for row, label in enumerate(train_labels))


def _columns(where: str, dataset, data_config) -> dict[str, list]:
    """The columns emoscale reads, as lists, after the missing-column and type checks."""
    text_column, label_column, id_column = (
        data_config.text_column,
        data_config.label_column,
        data_config.id_column,
    )
    required = [text_column, label_column] + ([id_column] if id_column else [])
    present = dataset.column_names
    for column in required:
        if column not in present:
            raise DataError(
                f"{where}: missing column {column!r} (columns: {', '.join(sorted(present))})"
            )
    _column_kind(dataset.features, text_column, where, "text")
    _column_kind(dataset.features, label_column, where, "label")
    optional = [column for column in (*OPTIONAL_COLUMNS, "turn") if column in present]
    return dataset.select_columns(list(dict.fromkeys(required + optional))).to_dict()


def _examples(split: str, where: str, columns: dict, labels: list[str], label_names, data_config):
    examples = []
    for row, label in enumerate(labels):
        at = f"{where}[{row}]"
        extra = optional_fields({column: values[row] for column, values in columns.items()}, at)
        id_column = data_config.id_column
        examples.append(
            Example(
                id=str(columns[id_column][row]) if id_column else f"{split}-{row}",
                text=check_text(columns[data_config.text_column][row] or "", at),
                label=label_index(label, label_names, at),
                **extra,
            )
        )
    check_unique_ids(examples, where)
    return examples


def load(data_config) -> Corpus:
    folder = corpus_folder(data_config)
    if (folder / "dataset_dict.json").is_file():
        by_split = _saved_dataset_dict(folder)
    elif (folder / "state.json").is_file():
        raise DataError(
            f"{folder}: one saved Dataset, not a DatasetDict; save a DatasetDict with train, dev (or validation) and test splits"
        )
    else:
        by_split = _split_files_dict(folder)

    label_column = data_config.label_column
    columns, labels = {}, {}
    for split, (where, dataset) in by_split.items():
        columns[split] = _columns(where, dataset, data_config)
        labels[split] = _label_strings(
            columns[split][label_column], dataset.features, label_column, where
        )
    train_where, train_dataset = by_split["train"]
    label_names = tuple(
        data_config.labels
        or _default_label_names(labels["train"], train_dataset.features, label_column, train_where)
    )
    splits = {
        split: _examples(split, where, columns[split], labels[split], label_names, data_config)
        for split, (where, _) in by_split.items()
    }
    return Corpus(CorpusInfo(data_config.dataset, label_names, label_words(label_names)), splits)
