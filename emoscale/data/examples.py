"""What every corpus loader returns: examples with integer labels plus the corpus' own facts."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from emoscale.errors import DataError

# The LLM paper's prompt (Sec. 3): the label words are listed, then the sentence; the answer follows.
PAPER_TEMPLATE = "Classify the sentiment of the sentence to {labels}: {text}"
# The same prompt for the emotion corpora (Friends, MELD, IEMOCAP, EmoDB).
EMOTION_TEMPLATE = "Classify the emotion of the sentence to {labels}: {text}"


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: int  # index into CorpusInfo.label_names
    speaker: str | None = None
    dialogue_id: str | None = None
    turn: int | None = None  # position inside its dialogue, 0-based
    session: str | None = None
    audio_path: str | None = None


@dataclass(frozen=True)
class CorpusInfo:
    """Facts a corpus declares: its labels, the words a prompt uses for them, language, paper metric."""

    name: str
    label_names: tuple[str, ...]
    label_words: tuple[str, ...]  # what the LLM reads and answers, e.g. "Positive"
    language: str = "en"
    template: str = PAPER_TEMPLATE
    paper_metric: str = "accuracy"  # the column the corpus' paper reports

    def __post_init__(self) -> None:
        if len(self.label_names) != len(self.label_words):
            raise ValueError(
                f"{self.name}: {len(self.label_names)} labels but {len(self.label_words)} label words"
            )


@dataclass
class Corpus:
    info: CorpusInfo
    splits: dict[str, list[Example]]  # "train", "dev", "test"
    dropped: Counter = field(default_factory=Counter)  # reason -> number of examples dropped
    # split -> utterances dropped from it (no usable label) that still belong to their dialogue:
    # shown as context in later turns' prompts (prompt.context_turns), never trained or scored.
    context_only: dict[str, list[Example]] = field(default_factory=dict)
    # split -> the file its examples were read from, for messages about that split; absent where
    # a split is carved from others (folds, Mastodon's dev) or shares a file (MMSA's label.csv).
    sources: dict[str, Path] = field(default_factory=dict)
    # split -> reason -> examples dropped from it (`dropped` totals every split); empty where a
    # corpus drops before it splits (IEMOCAP drops per session, then splits by fold).
    dropped_from: dict[str, Counter] = field(default_factory=dict)

    def split(self, name: str) -> list[Example]:
        if name not in self.splits:
            raise DataError(
                f"corpus {self.info.name!r} has no {name!r} split (it has {sorted(self.splits)})"
            )
        return self.splits[name]

    def class_counts(self, split: str) -> dict[str, int]:
        counts = Counter(example.label for example in self.split(split))
        return {name: counts.get(index, 0) for index, name in enumerate(self.info.label_names)}


def label_index(value: str, label_names: tuple[str, ...], where: str) -> int:
    """Map a label string to its index; an unknown one names the file and line it came from."""
    try:
        return label_names.index(value)
    except ValueError:
        raise DataError(f"{where}: label {value!r} is not one of {list(label_names)}") from None


def string_field(value: object, key: str, where: str) -> str:
    """A JSON corpus' text, speaker or label field: a string, never null, a number or a list
    (EmotionLines, M3ED; data/generic.py checks its own rows the same way)."""
    if not isinstance(value, str):
        shown = json.dumps(value, ensure_ascii=False)
        raise DataError(f"{where}: {key} is {shown[:40]}, expected a string")
    return value


def check_text(text: str, where: str) -> str:
    if not text or not text.strip():
        raise DataError(f"{where}: empty text")
    return text


def check_unique_ids(examples: list[Example], where: str) -> None:
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise DataError(f"{where}: duplicate example id {example.id!r}")
        seen.add(example.id)
