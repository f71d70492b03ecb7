"""Stanford Sentiment Treebank, sentence level: `sst2` (binary) and `sst5` (fine-grained).

Reads the sentence files `stsa.binary.{train,dev,test}` / `stsa.fine.{train,dev,test}` (one
`<label> <tokenised sentence>` per line), and for `sst2` also GLUE's `train.tsv`/`dev.tsv`
(`sentence<TAB>label`; GLUE's test labels are hidden, so its dev set doubles as test).
"""

from __future__ import annotations

from pathlib import Path

from emoscale.data.encoding import read_utf8
from emoscale.data.examples import Corpus, CorpusInfo, Example, check_text, label_index
from emoscale.data.layout import corpus_folder
from emoscale.errors import DataError

SST2 = CorpusInfo("sst2", ("negative", "positive"), ("Negative", "Positive"))
SST5 = CorpusInfo(
    "sst5",
    ("very negative", "negative", "neutral", "positive", "very positive"),
    ("Very negative", "Negative", "Neutral", "Positive", "Very positive"),
)
SPLITS = ("train", "dev", "test")


def _read_label_first(path: Path, info: CorpusInfo, split: str) -> list[Example]:
    examples = []
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        label, _, text = line.partition(" ")
        if not label.isdigit():
            raise DataError(f"{where}: expected '<label> <sentence>', got {line[:40]!r}")
        index = int(label)
        if index >= len(info.label_names):
            raise DataError(
                f"{where}: label {label!r} is not one of 0..{len(info.label_names) - 1}"
            )
        examples.append(Example(f"{split}-{number}", check_text(text.strip(), where), index))
    return examples


def _read_glue_tsv(path: Path, split: str) -> list[Example]:
    lines = read_utf8(path).splitlines()
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise DataError(f"{path}: expected GLUE SST-2 header 'sentence<TAB>label'")
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():  # a blank line (a trailing one, or between rows), as in stsa.*
            continue
        where = f"{path}:{number}"
        text, _, label = line.rpartition("\t")
        index = label_index(label.strip(), ("0", "1"), where)
        examples.append(Example(f"{split}-{number}", check_text(text.strip(), where), index))
    return examples


def _load(data_config, info: CorpusInfo, prefix: str) -> Corpus:
    folder = corpus_folder(data_config)
    if all((folder / f"{prefix}.{split}").is_file() for split in SPLITS):
        sources = {s: folder / f"{prefix}.{s}" for s in SPLITS}
        splits = {s: _read_label_first(sources[s], info, s) for s in SPLITS}
        return Corpus(info, splits, sources=sources)
    if info is SST2 and (folder / "train.tsv").is_file() and (folder / "dev.tsv").is_file():
        dev = _read_glue_tsv(folder / "dev.tsv", "dev")
        sources = {
            "train": folder / "train.tsv",
            "dev": folder / "dev.tsv",
            "test": folder / "dev.tsv",
        }
        splits = {"train": _read_glue_tsv(sources["train"], "train"), "dev": dev, "test": dev}
        return Corpus(info, splits, sources=sources)
    expected = ", ".join(f"{prefix}.{s}" for s in SPLITS)
    if info is SST2:
        expected += " (or GLUE's train.tsv and dev.tsv)"
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
    raise DataError(f"{folder}: expected {expected}; found {found}")


def load_sst2(data_config) -> Corpus:
    return _load(data_config, SST2, "stsa.binary")


def load_sst5(data_config) -> Corpus:
    return _load(data_config, SST5, "stsa.fine")
