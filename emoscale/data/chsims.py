"""CH-SIMS (Yu et al. 2020), Mandarin opinion clips: `chsims`.

Reads MMSA's `label.csv` (see mmsa.py): 2281 clips, 1368/456/457 in its train/valid/test `mode`
column. The multimodal score `label` is the mean of five annotators' -1/0/1, so one of -1.0, -0.8,
.., 1.0; `data.target` turns it into classes with the bins of MMSA's metricsTop.py (the CH-SIMS
authors' evaluation):
- `2class` (default): negative [-1.0, 0.0] against positive (0.0, 1.0] (a score of 0 is negative);
- `3class`: negative [-1.0, -0.2], neutral {0.0}, positive [0.2, 1.0];
- `5class`: negative {-1.0, -0.8}, weakly negative {-0.6, -0.4, -0.2}, neutral {0.0},
  weakly positive {0.2, 0.4, 0.6}, positive {0.8, 1.0}.
"""

from __future__ import annotations

from emoscale.data import mmsa
from emoscale.data.examples import Corpus, CorpusInfo
from emoscale.errors import DataError

# The LLM paper's prompt (see examples.PAPER_TEMPLATE) in Mandarin.
TEMPLATE = "将句子的情感分类为{labels}：{text}"
WORDS = {
    "negative": "消极",
    "weakly negative": "弱消极",
    "neutral": "中性",
    "weakly positive": "弱积极",
    "positive": "积极",
}


def _info(label_names: tuple[str, ...]) -> CorpusInfo:
    # MMSA reports accuracy (Acc-2, Acc-3, Acc-5) beside weighted F1.
    words = tuple(WORDS[name] for name in label_names)
    return CorpusInfo(
        "chsims", label_names, words, language="zh", template=TEMPLATE, paper_metric="accuracy"
    )


TARGETS = {
    "2class": _info(("negative", "positive")),
    "3class": _info(("negative", "neutral", "positive")),
    "5class": _info(("negative", "weakly negative", "neutral", "weakly positive", "positive")),
}
# Upper edges of the bins, from MMSA's ms_2 / ms_3 / ms_5; a score goes to the first bin it fits.
EDGES = {"2class": (0.0, 1.0), "3class": (-0.1, 0.1, 1.0), "5class": (-0.7, -0.1, 0.1, 0.7, 1.0)}


def label_of(score: float, target: str) -> int:
    return next(index for index, edge in enumerate(EDGES[target]) if score <= edge)


def load(data_config) -> Corpus:
    target = data_config.target or "2class"
    path, rows = mmsa.read_label_csv(data_config, "CH-SIMS (MMSA)")
    splits: dict = {"train": [], "dev": [], "test": []}
    for where, row in rows:
        score = mmsa.score(row, where)
        if not -1.0 <= score <= 1.0:
            raise DataError(
                f"{where}: label {score} is outside CH-SIMS's [-1, 1] (a CMU-MOSI label.csv?)"
            )
        splits[mmsa.split_of(row, where)].append(mmsa.example(row, where, label_of(score, target)))
    mmsa.check_ids(splits, path)
    return Corpus(TARGETS[target], splits)
