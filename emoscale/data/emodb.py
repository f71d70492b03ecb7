"""Berlin Database of Emotional Speech, EmoDB (Burkhardt et al. 2005): `emodb`.

Reads the `wav/` folder (data.path may be the corpus folder or `wav/` itself): 535 files named
`SSTTTEV.wav`, SS the speaker (03, 08..16), TTT the text code, E the emotion letter (German initials:
W Ärger, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral), V the version. Ten actors
read the same ten sentences in every emotion, so the text carries no emotion; it is kept for the
speech+text model. Users have only the wav folder, hence the sentence table below.

No official split: speaker folds (folds.py). Without data.fold the corpus is fold 0 of the
leave-one-speaker-out protocol: speaker 03 is test, and whole speakers carved from the rest are dev.
"""

from __future__ import annotations

import re
from pathlib import Path

from emoscale.data.examples import EMOTION_TEMPLATE, Corpus, CorpusInfo, Example
from emoscale.data.folds import SPEAKER_FOLDS, leave_speakers_out
from emoscale.data.layout import corpus_folder, listing
from emoscale.errors import DataError

EMOTIONS = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral")
LETTERS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
# Speech emotion papers report unweighted accuracy (mean recall per class) on EmoDB's skewed classes.
INFO = CorpusInfo(
    "emodb",
    EMOTIONS,
    tuple(name.capitalize() for name in EMOTIONS),
    language="de",
    template=EMOTION_TEMPLATE,
    paper_metric="ua",
)
# The corpus' published sentence list, by text code.
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
NAME = re.compile(r"^(\d\d)([ab]\d\d)(.)([a-z])\.wav$")


def _wav_folder(folder: Path) -> Path:
    for candidate in (folder / "wav", folder):
        if candidate.is_dir() and any(candidate.glob("*.wav")):
            return candidate
    raise DataError(
        f"{folder}: expected EmoDB's wav/ folder of SSTTTEV.wav files; found {listing(folder)}"
    )


def _example(path: Path, root: Path) -> Example:
    match = NAME.match(path.name)
    if not match:
        raise DataError(f"{path}: expected an EmoDB name SSTTTEV.wav (e.g. 03a01Fa.wav)")
    speaker, code, letter, _version = match.groups()
    if code not in SENTENCES:
        raise DataError(f"{path}: text code {code!r} is not one of {sorted(SENTENCES)}")
    if letter not in LETTERS:
        raise DataError(f"{path}: emotion letter {letter!r} is not one of {list(LETTERS)}")
    return Example(
        id=path.stem,
        text=SENTENCES[code],
        label=EMOTIONS.index(LETTERS[letter]),
        speaker=speaker,
        audio_path=path.relative_to(root).as_posix(),  # relative to data.path, as audio.py reads it
    )


def load(data_config) -> Corpus:
    root = corpus_folder(data_config)
    examples = [_example(path, root) for path in sorted(_wav_folder(root).glob("*.wav"))]
    folds = data_config.num_folds or SPEAKER_FOLDS["emodb"]
    return Corpus(INFO, leave_speakers_out(examples, fold=0, folds=folds))
