"""CMU-MOSI (Zadeh et al. 2016), the text of each opinion clip: `mosi`.

Reads MMSA's `label.csv` (the MOSI release of thuiar/MMSA, built from the CMU-MultimodalSDK labels;
see mmsa.py): 2199 clips, 1284/229/686 in its train/valid/test `mode` column, the standard split.
Each clip has a continuous score in [-3, 3]; `data.target` turns it into classes, with the
conventions of MMSA's metricsTop.py (the numbers MOSI papers report):
- `2class` (default): negative (< 0) against non-negative (>= 0), "Has0 Acc-2";
- `2class_nonzero`: negative (< 0) against positive (> 0), clips scored 0 dropped and counted, "Non0";
- `3class`: negative / neutral (= 0) / positive, by sign, as the file's `annotation` column;
- `7class`: the score clipped to [-3, 3] and rounded half to even (numpy's round) to -3 .. 3.
"""

from __future__ import annotations

import re
from collections import Counter

from emoscale.data import mmsa
from emoscale.data.examples import Corpus, CorpusInfo
from emoscale.errors import DataError

SEVEN = (
    "strongly negative",
    "negative",
    "weakly negative",
    "neutral",
    "weakly positive",
    "positive",
    "strongly positive",
)


def _info(label_names: tuple[str, ...]) -> CorpusInfo:
    # MOSI papers report accuracy (Acc-2, Acc-7) beside weighted F1.
    return CorpusInfo(
        "mosi",
        label_names,
        tuple(name.capitalize() for name in label_names),
        paper_metric="accuracy",
    )


TARGETS = {
    "2class": _info(("negative", "positive")),
    "2class_nonzero": _info(("negative", "positive")),
    "3class": _info(("negative", "neutral", "positive")),
    "7class": _info(SEVEN),
}
CHINESE = re.compile("[\u4e00-\u9fff]")


def label_of(score: float, target: str) -> int | None:
    """The class index of a score under `target`; None: the clip has no class (dropped)."""
    if target == "2class":
        return int(score >= 0)
    if target == "2class_nonzero":
        return None if score == 0 else int(score > 0)
    if target == "3class":
        return 0 if score < 0 else 1 if score == 0 else 2
    return round(min(3.0, max(-3.0, score))) + 3  # Python's round is half to even, like np.round


def load(data_config) -> Corpus:
    target = data_config.target or "2class"
    path, rows = mmsa.read_label_csv(data_config, "CMU-MOSI (MMSA)")
    where, first = rows[0]
    if CHINESE.search(first["text"]):
        raise DataError(
            f"{where}: the text is Mandarin; this label.csv looks like CH-SIMS's (data.dataset=chsims)"
        )
    splits: dict = {"train": [], "dev": [], "test": []}
    dropped_from: dict[str, Counter] = {split: Counter() for split in splits}
    for where, row in rows:
        label = label_of(mmsa.score(row, where), target)
        split = mmsa.split_of(row, where)
        if label is None:
            dropped_from[split]["score 0 (2class_nonzero has no neutral)"] += 1
            continue
        splits[split].append(mmsa.example(row, where, label))
    mmsa.check_ids(splits, path)
    dropped = sum(dropped_from.values(), Counter())
    return Corpus(TARGETS[target], splits, dropped, dropped_from=dropped_from)
