"""MELD (Poria et al. 2019), the text of each utterance: `meld`.

Reads `{train,dev,test}_sent_emo.csv` (9989/1109/2610 utterances) with the columns
`Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,...`. `data.target` picks the
labels: `emotion` (7, the default) or `sentiment` (3). Dialogue ids restart in every split, so the
example's dialogue id carries the split (`train-12`); the example id is MELD's clip name (`dia12_utt3`).
Copies older than declare-lab/MELD#28 (the MELD.Raw archive) keep Windows-1252 punctuation as C1
characters; those, and UTF-8 read as Windows-1252 (`â€™`), are repaired (see encoding.py).
"""

from __future__ import annotations

from pathlib import Path

from emoscale.data.encoding import read_text, repair
from emoscale.data.examples import (
    EMOTION_TEMPLATE,
    PAPER_TEMPLATE,
    Corpus,
    CorpusInfo,
    Example,
    check_text,
    check_unique_ids,
    label_index,
)
from emoscale.data.generic import delimited_rows
from emoscale.data.layout import corpus_folder, require
from emoscale.errors import DataError

EMOTIONS = ("neutral", "joy", "sadness", "fear", "anger", "surprise", "disgust")
SENTIMENTS = ("negative", "neutral", "positive")
# MELD's paper and the ERC literature report weighted F1.
TARGETS = {
    "emotion": CorpusInfo(
        "meld",
        EMOTIONS,
        tuple(e.capitalize() for e in EMOTIONS),
        template=EMOTION_TEMPLATE,
        paper_metric="weighted_f1",
    ),
    "sentiment": CorpusInfo(
        "meld",
        SENTIMENTS,
        tuple(s.capitalize() for s in SENTIMENTS),
        template=PAPER_TEMPLATE,
        paper_metric="weighted_f1",
    ),
}
SPLITS = ("train", "dev", "test")
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")


def _integer(value: str, column: str, where: str) -> int:
    if not (value or "").strip().isdigit():
        raise DataError(f"{where}: {column} {value!r} is not a whole number")
    return int(value)


def _read_split(path: Path, split: str, target: str) -> list[Example]:
    rows = delimited_rows(path, read_text(path))
    fieldnames = list(rows[0][1]) if rows else []
    missing = [column for column in COLUMNS if column not in fieldnames]
    if rows and missing:
        found = ",".join(fieldnames)
        raise DataError(f"{path}: expected MELD's columns {','.join(COLUMNS)}; found {found[:120]}")
    label_names = TARGETS[target].label_names
    label_column = target.capitalize()
    examples = []
    for where, row in rows:
        dialogue = _integer(row["Dialogue_ID"], "Dialogue_ID", where)
        turn = _integer(row["Utterance_ID"], "Utterance_ID", where)
        examples.append(
            Example(
                id=f"{split}-dia{dialogue}_utt{turn}",
                text=check_text(repair(row["Utterance"] or "").strip(), where),
                label=label_index((row[label_column] or "").strip(), label_names, where),
                speaker=repair(row["Speaker"] or "").strip(),
                dialogue_id=f"{split}-{dialogue}",
                turn=turn,
            )
        )
    check_unique_ids(examples, str(path))
    return examples


def load(data_config) -> Corpus:
    target = data_config.target or "emotion"
    folder = corpus_folder(data_config)
    require(folder, [f"{split}_sent_emo.csv" for split in SPLITS], "MELD")
    sources = {split: folder / f"{split}_sent_emo.csv" for split in SPLITS}
    splits = {split: _read_split(sources[split], split, target) for split in SPLITS}
    return Corpus(TARGETS[target], splits, sources=sources)
