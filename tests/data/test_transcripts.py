"""data.transcripts: an id<TAB>text file (e.g. ASR output) replaces the corpus' own text (issue 15)."""

from __future__ import annotations

import csv

import pytest

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.errors import ConfigError, DataError
from emoscale.models import build_family


def corpus_ids(tone_corpus) -> list[str]:
    ids = []
    for split in ("train", "dev", "test"):
        with open(tone_corpus / f"{split}.csv", newline="") as handle:
            ids += [row["id"] for row in csv.DictReader(handle)]
    return ids


def write(path, lines: list[str]):
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def config_with(fusion_overrides, transcripts, *extra):
    return load_config(
        overrides=fusion_overrides
        + ["data.id_column=id", f"data.transcripts={transcripts}", *extra]
    )


def test_transcripts_replace_every_examples_text(fusion_overrides, tone_corpus, tmp_path):
    ids = corpus_ids(tone_corpus)
    path = write(tmp_path / "asr.tsv", ["id\ttext"] + [f"{key}\tasr words {key}" for key in ids])
    config = config_with(fusion_overrides, path)
    corpus = load_corpus(config.data)
    build_family(config, corpus)
    texts = [example.text for split in ("train", "dev", "test") for example in corpus.split(split)]
    assert texts == [f"asr words {key}" for key in ids]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown", "{path}:{last}: id 'nobody' is not an example of csv (1 unknown ids)"),
        (
            "missing",
            "{path}: no transcript for csv train example 'train-0000' (1 missing in train)",
        ),
        ("duplicate", "{path}:{last}: id 'dev-0001' repeats line 163"),
        ("empty", "{path}:{last}: id 'dev-0001' has an empty text"),
        ("no tab", "{path}:{last}: expected '<id><TAB><text>', found no tab"),
    ],
)
def test_bad_transcripts_stop_with_one_line(
    fusion_overrides, tone_corpus, tmp_path, case, expected
):
    ids = corpus_ids(tone_corpus)
    lines = ["id\ttext"] + [f"{key}\tsome words" for key in ids]
    if case == "unknown":
        lines.append("nobody\twords")
    elif case == "missing":
        lines.remove("train-0000\tsome words")
    elif case == "duplicate":
        lines.append("dev-0001\tagain")
    elif case == "empty":
        lines.append("dev-0001\t  ")
    else:
        lines.append("dev-0001 words")
    path = write(tmp_path / "asr.tsv", lines)
    config = config_with(fusion_overrides, path)
    with pytest.raises(DataError) as error:
        build_family(config, load_corpus(config.data))
    assert str(error.value) == expected.format(path=path, last=len(lines))


def test_transcripts_need_a_text_encoder(fusion_overrides, tmp_path):
    with pytest.raises(ConfigError) as error:
        config_with(fusion_overrides, tmp_path / "asr.tsv", "model.modalities=audio")
    assert str(error.value) == (
        "config key 'data.transcripts': read by model.family=fusion with model.modalities "
        "text or both only"
    )


def test_a_missing_transcripts_file_is_named(fusion_overrides, tmp_path):
    config = config_with(fusion_overrides, tmp_path / "nothing.tsv")
    with pytest.raises(DataError) as error:
        build_family(config, load_corpus(config.data))
    assert str(error.value) == (
        f"{tmp_path / 'nothing.tsv'}: transcripts file not found (config key 'data.transcripts')"
    )
