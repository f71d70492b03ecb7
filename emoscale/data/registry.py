"""Name -> loader for every corpus. A loader takes the DataConfig and returns a Corpus."""

from __future__ import annotations

from collections.abc import Callable

from emoscale.data import (
    chsims,
    emodb,
    folds,
    friends,
    generic,
    hf_datasets,
    iemocap,
    m3ed,
    mastodon,
    meld,
    mosi,
    sst,
)
from emoscale.data.columns import label_words
from emoscale.data.examples import Corpus, CorpusInfo
from emoscale.errors import ConfigError, DataError

CORPORA: dict[str, Callable[..., Corpus]] = {
    "csv": generic.load,
    "tsv": generic.load,
    "jsonl": generic.load,
    "hf": hf_datasets.load,  # a Hugging Face datasets folder: save_to_disk, Parquet, Arrow, JSONL
    "sst2": sst.load_sst2,
    "sst5": sst.load_sst5,
    "friends": friends.load,
    "meld": meld.load,
    "mastodon": mastodon.load,
    "mosi": mosi.load,
    "chsims": chsims.load,
    "m3ed": m3ed.load,
    "iemocap": iemocap.load,
    "emodb": emodb.load,
}
# The labellings a corpus offers through data.target; the first is its default.
TARGETS: dict[str, tuple[str, ...]] = {
    "meld": tuple(meld.TARGETS),
    "mosi": tuple(mosi.TARGETS),
    "chsims": tuple(chsims.TARGETS),
}


# What each named corpus declares (labels, label words, template) without reading a file.
DECLARED: dict[str, Callable[[str | None], CorpusInfo]] = {
    "sst2": lambda target: sst.SST2,
    "sst5": lambda target: sst.SST5,
    "friends": lambda target: friends.INFO,
    "meld": lambda target: meld.TARGETS[target or TARGETS["meld"][0]],
    "mastodon": lambda target: mastodon.INFO,
    "mosi": lambda target: mosi.TARGETS[target or TARGETS["mosi"][0]],
    "chsims": lambda target: chsims.TARGETS[target or TARGETS["chsims"][0]],
    "m3ed": lambda target: m3ed.INFO,
    "iemocap": lambda target: iemocap.INFO,
    "emodb": lambda target: emodb.INFO,
}


def declared_info(data_config) -> CorpusInfo | None:
    """The corpus' labels, label words and prompt template without reading it (a recipe's
    data.path may still be a placeholder): a named corpus declares them; a generic one
    (csv/tsv/jsonl/hf) only with data.labels. None where only its train split can say."""
    _check_target(data_config)
    if data_config.dataset in DECLARED:
        return DECLARED[data_config.dataset](data_config.target)
    if data_config.labels:
        labels = tuple(data_config.labels)
        return CorpusInfo(data_config.dataset, labels, label_words(labels))
    return None


def _check_target(data_config) -> None:
    target, dataset = data_config.target, data_config.dataset
    if target is None:
        return
    if dataset not in TARGETS:
        raise ConfigError(
            f"config key 'data.target': dataset {dataset!r} has one labelling; data.target is for {', '.join(TARGETS)}"
        )
    if target not in TARGETS[dataset]:
        raise ConfigError(
            f"config key 'data.target': {target!r} is not a target of {dataset}; choose {', '.join(TARGETS[dataset])}"
        )


def load_corpus(data_config) -> Corpus:
    """The corpus data.dataset names; re-split for cross-validation when data.fold is set."""
    _check_target(data_config)
    corpus = CORPORA[data_config.dataset](data_config)
    if data_config.fold is not None:
        corpus = folds.split_fold(corpus, data_config)
    if data_config.train_on_dev:  # dev stays as it is (evaluated, logged), and trains too
        dev_ids = {example.id for example in corpus.split("dev")}
        if dev_ids & {example.id for example in corpus.split("test")}:
            raise ConfigError(
                f"config key 'data.train_on_dev': {corpus.info.name}'s dev split is also its test "
                "split here (GLUE's SST-2 layout has no labelled test), so dev cannot train"
            )
        corpus.splits["train"] = corpus.split("train") + corpus.split("dev")
        # Dev dialogues keep their unlabelled turns as context when they train, as when evaluated.
        corpus.context_only["train"] = corpus.context_only.get("train", []) + list(
            corpus.context_only.get("dev", [])
        )
    _check_no_empty_split(corpus, data_config)
    return corpus


def _check_no_empty_split(corpus: Corpus, data_config) -> None:
    """Every split must hold an example, whatever made it empty (an empty file, a split whose
    utterances were all dropped, a label.csv without `valid` rows, a fold): an empty train split
    never reaches max_steps (the run hung), an empty dev or test split failed in the metrics after
    training. One line for every corpus, before any model loads."""
    counts = {name: len(examples) for name, examples in corpus.splits.items()}
    for name in ("train", "dev", "test"):
        if counts.get(name, 0) == 0:
            shown = ", ".join(f"{split} {count}" for split, count in counts.items())
            source = corpus.sources.get(name)
            where = str(source) if source is not None else f"data.path {data_config.path}"
            raise DataError(
                f"{where}: the {name} split holds no examples ({corpus.info.name}: {shown}): "
                f"{_what_emptied(corpus, name, data_config)}; every split needs at least one"
            )


def _what_emptied(corpus: Corpus, name: str, data_config) -> str:
    """Why a split is empty, as far as the loader knows: its own drops, its file, a fold."""
    dropped = corpus.dropped_from.get(name)
    if dropped:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in dropped.items())
        return f"all {sum(dropped.values())} of its examples were dropped ({reasons})"
    if data_config.fold is not None:
        return f"data.fold={data_config.fold} leaves it none"
    if name in corpus.sources:
        return "its file holds none"
    if corpus.dropped and not corpus.dropped_from:  # dropped before the corpus was split
        reasons = ", ".join(f"{reason}: {count}" for reason, count in corpus.dropped.items())
        return f"none left after the corpus' drops ({reasons})"
    return "none left when the corpus was split"
