"""Mastodon dialogue sentiment (Cerisara et al. 2018): `mastodon`.

Reads `datatrainJoint.txt` and `datatestJoint.txt` (1063 and 1142 posts): one post per line,
`<position in dialogue> <sentiment>_<dialogue act> <tokens>`, sentiment `*` neutral, `+` positive,
`-` negative; position 0 opens a new dialogue. The `.idx` files hold the same posts as integers and
are not needed. Posts carry no author, so examples have no speaker.

There is no official dev file. As in the paper's cross-validation (their code/splitTrainDev.py),
dev is a tenth of the training dialogues, whole dialogues: here fold 0 of `folds.hold_out_dialogues`,
and `data.fold=i` picks the i-th tenth instead (see folds.py).
"""

from __future__ import annotations

from pathlib import Path

from emoscale.data.encoding import read_utf8
from emoscale.data.examples import Corpus, CorpusInfo, Example, check_text, label_index
from emoscale.data.folds import MASTODON_FOLDS, hold_out_dialogues
from emoscale.data.layout import corpus_folder, require
from emoscale.errors import DataError

SENTIMENTS = ("negative", "neutral", "positive")
SYMBOLS = {"-": "negative", "*": "neutral", "+": "positive"}
# The paper reports sentiment accuracy; the LLM paper adds F1, which the evaluation computes too.
INFO = CorpusInfo(
    "mastodon", SENTIMENTS, ("Negative", "Neutral", "Positive"), paper_metric="accuracy"
)
FILES = {"train": "datatrainJoint.txt", "test": "datatestJoint.txt"}


def _read(path: Path, split: str) -> list[Example]:
    examples: list[Example] = []
    dialogue, expected = -1, 0
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        position, tag, text = (line.strip().split(" ", 2) + ["", ""])[:3]
        symbol, underscore, _act = tag.partition("_")
        if not position.isdigit() or not underscore:
            raise DataError(
                f"{where}: expected '<position> <sentiment>_<act> <tokens>', got {line[:40]!r}"
            )
        if int(position) == 0:
            dialogue, expected = dialogue + 1, 0
        if int(position) != expected:
            raise DataError(
                f"{where}: position {position} follows position {expected - 1} of the same dialogue"
            )
        label = label_index(SYMBOLS.get(symbol, symbol), SENTIMENTS, where)
        examples.append(
            Example(
                id=f"{split}-{dialogue}-{position}",
                text=check_text(text.strip(), where),
                label=label,
                dialogue_id=f"{split}-{dialogue}",
                turn=int(position),
            )
        )
        expected += 1
    return examples


def load(data_config) -> Corpus:
    folder = corpus_folder(data_config)
    require(folder, list(FILES.values()), "Mastodon")
    train, dev = hold_out_dialogues(
        _read(folder / FILES["train"], "train"), fold=0, folds=MASTODON_FOLDS
    )
    return Corpus(INFO, {"train": train, "dev": dev, "test": _read(folder / FILES["test"], "test")})
