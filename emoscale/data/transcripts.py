"""Transcripts from a file (`data.transcripts`), replacing the corpus' own text (issue 15).

LoRA-MER feeds its text encoder ASR output ("we use ASR ... to recognize audios into texts"), not
IEMOCAP's reference transcriptions, which are cleaner than any recogniser and flatter the text and
fusion rows. Any ASR system's output can be supplied as a UTF-8 file with one utterance a line:

    <example id><TAB><text>          e.g.  Ses01F_impro01_F000<TAB>excuse me

An optional first line `id<TAB>text` is a header. Every example of the corpus (every split) must
have exactly one non-empty line and every line must name an example: a mistake stops the run with
one line naming the file and line, before any model loads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from emoscale.data.encoding import read_text
from emoscale.data.examples import Corpus
from emoscale.errors import DataError

HEADER = ("id", "text")


def read_transcripts(path: str | Path) -> dict[str, tuple[str, int]]:
    """{example id: (text, line number)} from an `id<TAB>text` file, checked line by line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: transcripts file not found (config key 'data.transcripts')")
    texts: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{path}:{number}: expected '<id><TAB><text>', found no tab")
        key, text = line.split("\t", 1)
        key, text = key.strip(), text.strip()
        if number == 1 and (key.lower(), text.lower()) == HEADER:
            continue
        if not key:
            raise DataError(f"{path}:{number}: empty id")
        if not text:
            raise DataError(f"{path}:{number}: id {key!r} has an empty text")
        if key in texts:
            raise DataError(f"{path}:{number}: id {key!r} repeats line {texts[key][1]}")
        texts[key] = (text, number)
    if not texts:
        raise DataError(f"{path}: no transcripts (expected '<id><TAB><text>' lines)")
    return texts


def apply_transcripts(corpus: Corpus, path: str | Path) -> Corpus:
    """The corpus with every example's text taken from the file (in place; returned for chaining)."""
    texts = read_transcripts(path)
    known = {example.id for examples in corpus.splits.values() for example in examples}
    unknown = [key for key in texts if key not in known]
    if unknown:
        key = unknown[0]
        raise DataError(
            f"{path}:{texts[key][1]}: id {key!r} is not an example of {corpus.info.name} "
            f"({len(unknown)} unknown ids)"
        )
    for split, examples in corpus.splits.items():
        missing = [example.id for example in examples if example.id not in texts]
        if missing:
            raise DataError(
                f"{path}: no transcript for {corpus.info.name} {split} example {missing[0]!r} "
                f"({len(missing)} missing in {split})"
            )
        corpus.splits[split] = [
            dataclasses.replace(example, text=texts[example.id][0]) for example in examples
        ]
    return corpus
