"""IEMOCAP (Busso et al. 2008), the four-class setting of the speech papers: `iemocap`.

data.path is `IEMOCAP_full_release/` with `Session1` .. `Session5`, each holding
- `dialog/EmoEvaluation/<dialog>.txt`: one line per utterance,
  `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`, then the
  annotators' lines (C-E2:, A-E3: ...), which are not needed;
- `dialog/transcriptions/<dialog>.txt`: `Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`;
- `sentences/wav/<dialog>/<utterance>.wav`: audio_path, relative to data.path as audio.py reads it
  (`Session1/sentences/wav/...`), set when a session has that folder.
Four classes with excited merged into happy (5531 utterances: neutral 1708, happy 1636, angry
1103, sad 1084); frustration, surprise, fear, disgust, other and no-agreement (`xxx`) are dropped
and counted. The speaker is the session plus the F/M of the utterance name: `Ses01_F`.
macOS copies carry `._<name>` resource files beside the real ones: skipped.

Without data.fold the split is the common one: Session5 is test (fold 4 of leave-one-session-out).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from emoscale.data.encoding import read_text
from emoscale.data.examples import (
    EMOTION_TEMPLATE,
    Corpus,
    CorpusInfo,
    Example,
    check_unique_ids,
)
from emoscale.data.folds import IEMOCAP_SESSIONS, leave_one_session_out
from emoscale.data.layout import corpus_folder, listing
from emoscale.errors import DataError

EMOTIONS = ("neutral", "happy", "angry", "sad")
KEPT = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
DROPPED = {"fru", "sur", "fea", "dis", "oth", "xxx"}
# The speech papers report weighted (overall) and unweighted (mean per-class recall) accuracy;
# UA is the one that the 4-class imbalance cannot flatter.
INFO = CorpusInfo(
    "iemocap",
    EMOTIONS,
    ("Neutral", "Happy", "Angry", "Sad"),
    template=EMOTION_TEMPLATE,
    paper_metric="ua",
)
EVALUATION = re.compile(r"^\[([\d.]+) - [\d.]+\]\s+(Ses\S+)\s+(\S+)\s+\[")
TRANSCRIPT = re.compile(r"^(Ses\S+) \[[^\]]*\]:(.*)$")


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.txt") if not path.name.startswith("._"))


def _labels(path: Path) -> list[tuple[str, str, str]]:
    """(utterance name, emotion code, where) for each utterance of an EmoEvaluation file, in
    order of start time: the utterance's turn is its position in this list."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        match = EVALUATION.match(line)
        if match:
            where = f"{path}:{number}"
            try:  # the order of turns comes from it: never guessed
                start = float(match.group(1))
            except ValueError:
                raise DataError(f"{where}: start time {match.group(1)!r} is not a number") from None
            rows.append((start, match.group(2), match.group(3), where))
    return [(name, code, where) for _, name, code, where in sorted(rows)]


def _transcripts(folder: Path) -> dict[str, str]:
    texts = {}
    for path in _files(folder):
        for line in read_text(path).splitlines():
            match = TRANSCRIPT.match(line.strip())
            if match:
                texts[match.group(1)] = match.group(2).strip()
    return texts


def _session(folder: Path, dropped: Counter) -> list[Example]:
    evaluations = folder / "dialog" / "EmoEvaluation"
    transcriptions = folder / "dialog" / "transcriptions"
    if not (evaluations.is_dir() and transcriptions.is_dir()):
        expected = "dialog/EmoEvaluation and dialog/transcriptions"
        raise DataError(f"{folder}: expected IEMOCAP's {expected}; found {listing(folder)}")
    texts = _transcripts(transcriptions)
    wav = folder / "sentences" / "wav"
    if not _files(evaluations):
        raise DataError(
            f"{evaluations}: expected IEMOCAP's <dialog>.txt label files; found {listing(evaluations)}"
        )
    examples = []
    for path in _files(evaluations):
        for turn, (name, code, where) in enumerate(_labels(path)):
            if code in DROPPED:
                dropped[f"label {code}"] += 1
                continue
            if code not in KEPT:
                codes = ", ".join(sorted([*KEPT, *DROPPED]))
                raise DataError(f"{where}: label {code!r} is not an IEMOCAP code ({codes})")
            if name not in texts:
                raise DataError(
                    f"{where}: utterance {name} has no line in {transcriptions / path.name}"
                )
            if not texts[name]:
                dropped["empty transcription"] += 1
                continue
            dialog = name.rsplit("_", 1)[0]
            examples.append(
                Example(
                    id=name,
                    text=texts[name],
                    label=EMOTIONS.index(KEPT[code]),
                    speaker=f"{name[:5]}_{name.rsplit('_', 1)[1][0]}",  # Ses01F_impro01_M003 -> Ses01_M
                    dialogue_id=dialog,
                    turn=turn,
                    session=folder.name,
                    audio_path=f"{folder.name}/sentences/wav/{dialog}/{name}.wav"
                    if wav.is_dir()
                    else None,
                )
            )
    return examples


def load(data_config) -> Corpus:
    folder = corpus_folder(data_config)
    sessions = [folder / f"Session{i}" for i in range(1, IEMOCAP_SESSIONS + 1)]
    if not all(session.is_dir() for session in sessions):
        raise DataError(
            f"{folder}: expected IEMOCAP_full_release's Session1 .. Session5; found {listing(folder)}"
        )
    dropped: Counter = Counter()
    examples = [example for session in sessions for example in _session(session, dropped)]
    # An utterance labelled in two files (a copied EmoEvaluation file) would train twice and could
    # sit in train and test at once.
    check_unique_ids(examples, f"{folder} (utterance names in dialog/EmoEvaluation)")
    return Corpus(INFO, leave_one_session_out(examples, fold=IEMOCAP_SESSIONS - 1), dropped)
