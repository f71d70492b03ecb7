"""EmotionLines, Friends part (Chen et al. 2018): `friends`.

Reads `friends_{train,dev,test}.json` (720/80/200 dialogues): a list of dialogues, each a list of
`{"speaker", "utterance", "emotion", "annotation"}`. Seven emotions; `non-neutral` marks an utterance
whose annotators found no majority emotion, and is dropped (counted in `Corpus.dropped`), as in the
EmotionX challenge. The files store Windows-1252 punctuation as C1 characters (`\\u0092` for ’):
repaired in text and speaker names (see encoding.py).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from emoscale.data.encoding import read_json, repair
from emoscale.data.examples import (
    EMOTION_TEMPLATE,
    Corpus,
    CorpusInfo,
    Example,
    check_text,
    label_index,
    string_field,
)
from emoscale.data.layout import corpus_folder, require
from emoscale.errors import DataError

EMOTIONS = ("neutral", "joy", "sadness", "fear", "anger", "surprise", "disgust")
# The LLM paper reports accuracy, macro-F1 and UA for Friends (the caption of its Table 5: macro-F1
# for Friends, weighted F1 for M3ED); its F1 is macro here. Every metric is computed anyway.
INFO = CorpusInfo(
    "friends",
    EMOTIONS,
    tuple(name.capitalize() for name in EMOTIONS),
    template=EMOTION_TEMPLATE,
    paper_metric="macro_f1",
)
NO_MAJORITY = "non-neutral"
SPLITS = ("train", "dev", "test")
KEYS = ("speaker", "utterance", "emotion")


def _read_split(
    path: Path, split: str, dropped: Counter, context_only: list[Example]
) -> list[Example]:
    dialogues = read_json(path)
    if not isinstance(dialogues, list) or not all(isinstance(d, list) for d in dialogues):
        raise DataError(
            f"{path}: expected a list of dialogues, each a list of utterances (EmotionLines)"
        )
    examples = []
    for d, dialogue in enumerate(dialogues):
        for turn, utterance in enumerate(dialogue):
            where = f"{path}: dialogue {d}, utterance {turn}"
            missing = [
                key for key in KEYS if not isinstance(utterance, dict) or key not in utterance
            ]
            if missing:
                raise DataError(f"{where}: missing key {missing[0]!r} (expected {', '.join(KEYS)})")
            text = repair(string_field(utterance["utterance"], "utterance", where)).strip()
            example = Example(
                id=f"{split}-{d}-{turn}",
                text=text,
                label=-1,
                speaker=repair(string_field(utterance["speaker"], "speaker", where)),
                dialogue_id=f"{split}-{d}",
                turn=turn,
            )
            emotion = string_field(utterance["emotion"], "emotion", where)
            if emotion == NO_MAJORITY:  # not scored, but still said in the dialogue
                dropped["non-neutral (no majority emotion)"] += 1
                if text:
                    context_only.append(example)
                continue
            check_text(text, where)
            label = label_index(emotion, EMOTIONS, where)
            examples.append(dataclasses.replace(example, label=label))
    return examples


def load(data_config) -> Corpus:
    folder = corpus_folder(data_config)
    require(folder, [f"friends_{split}.json" for split in SPLITS], "EmotionLines Friends")
    sources = {split: folder / f"friends_{split}.json" for split in SPLITS}
    dropped_from: dict[str, Counter] = {split: Counter() for split in SPLITS}
    context_only: dict[str, list[Example]] = {split: [] for split in SPLITS}
    splits = {
        split: _read_split(sources[split], split, dropped_from[split], context_only[split])
        for split in SPLITS
    }
    dropped = sum(dropped_from.values(), Counter())
    return Corpus(INFO, splits, dropped, context_only, sources, dropped_from)
