"""M3ED (Zhao et al. 2022), Mandarin TV-series dialogues: `m3ed`.

Reads the release's `annotation.json` and its split files `splitInfo/movie_list_{train,val,test}.txt`
(one series name per line; the split is by series: 38/7/10 series, 685/126/179 dialogues,
17427/2871/4151 utterances). annotation.json nests series -> dialogue -> utterances:

    {"anjia": {"anjia_1": {"SpeakerInfo": {"A": {"Name": "朱闪闪", ...}, ...},
                           "Dialog": {"anjia_1_1": {"Text": "...", "Speaker": "A",
                                      "EmoAnnotation": {"final_main_emo": "Neutral", ...}}}}}}

The label is `final_main_emo` (7 emotions); the speaker is the character's name; utterances are
ordered by the number that ends their id. The paper reports weighted F1.
"""

from __future__ import annotations

from pathlib import Path

from emoscale.data.encoding import read_json, read_utf8
from emoscale.data.examples import (
    Corpus,
    CorpusInfo,
    Example,
    check_text,
    check_unique_ids,
    label_index,
    string_field,
)
from emoscale.data.folds import natural_key
from emoscale.data.layout import corpus_folder, require
from emoscale.errors import DataError

EMOTIONS = ("happy", "surprise", "sad", "disgust", "anger", "fear", "neutral")
LABELS = {name.capitalize(): name for name in EMOTIONS}  # the file writes "Happy", "Neutral", ...
# The LLM paper's prompt (see examples.EMOTION_TEMPLATE) in Mandarin.
TEMPLATE = "将句子的情绪分类为{labels}：{text}"
INFO = CorpusInfo(
    "m3ed",
    EMOTIONS,
    ("高兴", "惊讶", "悲伤", "厌恶", "愤怒", "恐惧", "中性"),
    language="zh",
    template=TEMPLATE,
    paper_metric="weighted_f1",
)
SPLIT_FILES = {
    "train": "splitInfo/movie_list_train.txt",
    "dev": "splitInfo/movie_list_val.txt",
    "test": "splitInfo/movie_list_test.txt",
}


def _series_splits(folder: Path) -> dict[str, str]:
    owner: dict[str, str] = {}
    for split, name in SPLIT_FILES.items():
        for series in read_utf8(folder / name).split():
            if series in owner:
                raise DataError(
                    f"{folder / name}: series {series!r} is also in the {owner[series]} list"
                )
            owner[series] = split
    return owner


def _dialogue(path: Path, dialogue_id: str, dialogue: dict) -> list[Example]:
    where = f"{path}: dialogue {dialogue_id}"
    if not isinstance(dialogue, dict) or not isinstance(dialogue.get("Dialog"), dict):
        raise DataError(
            f"{where}: expected {{'SpeakerInfo': ..., 'Dialog': {{utterance id: ...}}}}"
        )
    speakers = dialogue.get("SpeakerInfo") or {}
    if not isinstance(speakers, dict) or not all(isinstance(v, dict) for v in speakers.values()):
        raise DataError(f"{where}: expected SpeakerInfo {{'A': {{'Name': ...}}, ...}}")
    names = {key: info.get("Name") for key, info in speakers.items()}
    examples = []
    for turn, utterance_id in enumerate(sorted(dialogue["Dialog"], key=natural_key)):
        utterance = dialogue["Dialog"][utterance_id]
        where = f"{path}: utterance {utterance_id}"
        try:
            text, speaker, emotion = (
                utterance["Text"],
                utterance["Speaker"],
                utterance["EmoAnnotation"]["final_main_emo"],
            )
        except (KeyError, TypeError):
            raise DataError(
                f"{where}: expected Text, Speaker and EmoAnnotation.final_main_emo"
            ) from None
        examples.append(
            Example(
                id=utterance_id,
                text=check_text(string_field(text, "Text", where).strip(), where),
                label=label_index(
                    LABELS.get(string_field(emotion, "final_main_emo", where), emotion),
                    EMOTIONS,
                    where,
                ),
                speaker=names.get(string_field(speaker, "Speaker", where)) or speaker,
                dialogue_id=dialogue_id,
                turn=turn,
            )
        )
    return examples


def load(data_config) -> Corpus:
    folder = corpus_folder(data_config)
    require(folder, ["annotation.json", *SPLIT_FILES.values()], "M3ED")
    owner = _series_splits(folder)
    path = folder / "annotation.json"
    annotation = read_json(path)
    if not isinstance(annotation, dict):
        raise DataError(f"{path}: expected M3ED's {{series: {{dialogue: ...}}}} object")
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for series, dialogues in annotation.items():
        if series not in owner:
            raise DataError(
                f"{path}: series {series!r} is in none of {', '.join(SPLIT_FILES.values())}"
            )
        if not isinstance(dialogues, dict):
            raise DataError(f"{path}: series {series!r}: expected {{dialogue id: dialogue}}")
        for dialogue_id, dialogue in dialogues.items():
            splits[owner[series]] += _dialogue(path, dialogue_id, dialogue)
    check_unique_ids([example for examples in splits.values() for example in examples], str(path))
    return Corpus(INFO, splits)
