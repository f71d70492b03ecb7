"""Cross-validation folds: a corpus re-split so that no speaker (or dialogue) is in two splits.

    data.fold=2                      # IEMOCAP: test on Session3
    data.fold=0 data.num_folds=5     # EmoDB: five folds of two speakers each

- IEMOCAP: leave-one-session-out, 5 folds; fold i tests Session i+1 (the speech papers' protocol).
- EmoDB, and csv/tsv/jsonl/hf corpora with a speaker column: folds of whole speakers (EmoDB: one of
  its 10 speakers per fold by default; generic corpora: 5 folds). Speakers are sorted and dealt out
  in turn, so fold i tests speakers i, i+k, i+2k, ...
- Mastodon: the paper's 10-fold cross-validation (Cerisara et al. 2018, code/splitTrainDev.py in
  their repository): the official test set stays, fold i holds out one tenth of the training
  dialogues as dev. The tenths are disjoint, so the 10 dev sets cover the training set once.
In every fold the dev split is whole speakers (dialogues for Mastodon) carved from the training
side, never from the test fold, and the same in every run: `check_disjoint` proves it.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from emoscale.data.examples import Corpus, Example
from emoscale.errors import ConfigError, DataError

DEV_FRACTION = 0.1  # dev: whole groups, as close to a tenth of the training side as they come
# The default number of speaker folds of each corpus that has them.
SPEAKER_FOLDS = {"emodb": 10, "csv": 5, "tsv": 5, "jsonl": 5, "hf": 5}
IEMOCAP_SESSIONS = 5
MASTODON_FOLDS = 10


def natural_key(text: str) -> tuple:
    """'Ses2' < 'Ses10', 'train-9' < 'train-10': the order a person expects, stable across runs."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def num_folds(corpus_name: str, data_config) -> int:
    """How many folds `corpus_name` has under `data_config` (for `emoscale cv`)."""
    if corpus_name == "iemocap":
        if data_config.num_folds not in (None, IEMOCAP_SESSIONS):
            raise ConfigError(
                f"config key 'data.num_folds': IEMOCAP's folds are its {IEMOCAP_SESSIONS} sessions "
                f"(got {data_config.num_folds})"
            )
        return IEMOCAP_SESSIONS
    if corpus_name == "mastodon":
        return data_config.num_folds or MASTODON_FOLDS
    if corpus_name in SPEAKER_FOLDS:
        return data_config.num_folds or SPEAKER_FOLDS[corpus_name]
    raise ConfigError(
        f"config key 'data.fold': dataset {corpus_name!r} has official splits and no folds; "
        "folds exist for iemocap, emodb, mastodon, and csv/tsv/jsonl/hf corpora with a speaker column"
    )


def _group(example: Example, key: str) -> str:
    value = getattr(example, key)
    if value is None:
        raise DataError(f"example {example.id!r} has no {key}; folds need a {key} on every example")
    return value


def check_disjoint(splits: dict[str, list[Example]], key: str) -> None:
    """No `key` value (speaker, session, dialogue_id) may appear in two of the splits."""
    owner: dict[str, str] = {}
    for split, examples in splits.items():
        for value in {_group(example, key) for example in examples}:
            if value in owner:
                raise DataError(f"{key} {value!r} is in both {owner[value]} and {split}")
            owner[value] = split


def carve_dev(train: list[Example], key: str, seed: int) -> tuple[list[Example], list[Example]]:
    """Whole groups (speakers) moved from `train` to dev until dev holds ~DEV_FRACTION of it."""
    sizes = Counter(_group(example, key) for example in train)
    if len(sizes) < 2:
        raise DataError(
            f"cannot carve a dev split: the training side has {len(sizes)} {key}(s), need 2"
        )
    groups = sorted(sizes, key=natural_key)
    random.Random(seed).shuffle(groups)
    target, size, chosen = DEV_FRACTION * len(train), 0, set()
    for group in groups[:-1]:  # at least one group stays in train
        if chosen and abs(size + sizes[group] - target) >= abs(size - target):
            break  # one more group would take dev further from a tenth
        chosen.add(group)
        size += sizes[group]
    dev = [example for example in train if getattr(example, key) in chosen]
    return [example for example in train if getattr(example, key) not in chosen], dev


def leave_one_session_out(examples: list[Example], fold: int) -> dict[str, list[Example]]:
    """IEMOCAP fold i: Session i+1 is test; one speaker of the other sessions is dev."""
    test_session = f"Session{fold + 1}"
    test = [e for e in examples if e.session == test_session]
    train, dev = carve_dev([e for e in examples if e.session != test_session], "speaker", seed=fold)
    splits = {"train": train, "dev": dev, "test": test}
    check_disjoint(splits, "speaker")
    check_disjoint({"train and dev": train + dev, "test": test}, "session")
    return splits


def leave_speakers_out(examples: list[Example], fold: int, folds: int) -> dict[str, list[Example]]:
    speakers = sorted({_group(example, "speaker") for example in examples}, key=natural_key)
    if len(speakers) < folds:
        raise DataError(
            f"{folds} speaker folds need at least {folds} speakers; the corpus has {len(speakers)}"
        )
    tested = set(speakers[fold::folds])
    train, dev = carve_dev([e for e in examples if e.speaker not in tested], "speaker", seed=fold)
    splits = {"train": train, "dev": dev, "test": [e for e in examples if e.speaker in tested]}
    check_disjoint(splits, "speaker")
    return splits


def hold_out_dialogues(
    examples: list[Example], fold: int, folds: int
) -> tuple[list[Example], list[Example]]:
    """(train, dev): dev is the fold-th of `folds` disjoint parts of the dialogues."""
    dialogues = sorted({_group(example, "dialogue_id") for example in examples}, key=natural_key)
    random.Random(0).shuffle(dialogues)  # one order for every fold, so the parts never overlap
    held_out = set(dialogues[fold::folds])
    dev = [e for e in examples if e.dialogue_id in held_out]
    return [e for e in examples if e.dialogue_id not in held_out], dev


def _pool(corpus: Corpus, split_names: tuple[str, ...]) -> list[Example]:
    examples = [example for name in split_names for example in corpus.split(name)]
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise DataError(
                f"example id {example.id!r} is in two splits; folds need ids unique across splits"
            )
        seen.add(example.id)
    return sorted(examples, key=lambda example: natural_key(example.id))


def split_fold(corpus: Corpus, data_config) -> Corpus:
    """The corpus re-split for fold `data_config.fold` (called by `load_corpus`)."""
    name, fold = data_config.dataset, data_config.fold
    folds = num_folds(name, data_config)
    if fold >= folds:
        raise ConfigError(
            f"config key 'data.fold': {fold} is out of range; {name} has {folds} folds (0..{folds - 1})"
        )
    if name == "iemocap":
        splits = leave_one_session_out(_pool(corpus, ("train", "dev", "test")), fold)
    elif name == "mastodon":
        pool = _pool(corpus, ("train", "dev"))
        dialogues = {_group(example, "dialogue_id") for example in pool}
        if len(dialogues) < folds:  # some folds' dev would be empty (cv checks fold 0 up front)
            raise DataError(
                f"data.path {data_config.path}: {folds} dialogue folds (data.num_folds) need at "
                f"least {folds} dialogues in train and dev; the corpus has {len(dialogues)}"
            )
        train, dev = hold_out_dialogues(pool, fold, folds)
        splits = {"train": train, "dev": dev, "test": corpus.split("test")}
        check_disjoint(splits, "dialogue_id")
    else:
        splits = leave_speakers_out(_pool(corpus, ("train", "dev", "test")), fold, folds)
    return Corpus(corpus.info, splits, corpus.dropped)
