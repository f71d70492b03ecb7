import json

import pytest
from corpus_files import data_config

from emoscale.data import generic
from emoscale.errors import DataError


def test_csv_with_optional_columns_and_sorted_labels(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.csv").write_text(
            'text,label,speaker,dialogue_id,turn,audio_path\n"Hi, you.",pos,Ann,d1,0,a.wav\nBye.,neg,Bob,d1,1,\n'
        )
    corpus = generic.load(data_config("csv", tmp_path))
    assert corpus.info.label_names == ("neg", "pos")
    first, second = corpus.split("dev")
    assert (
        first.text,
        first.label,
        first.speaker,
        first.dialogue_id,
        first.turn,
        first.audio_path,
    ) == ("Hi, you.", 1, "Ann", "d1", 0, "a.wav")
    assert second.audio_path is None


def test_jsonl_errors_name_the_line(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"text": "hi", "label": "a"}) + "\n")
    (tmp_path / "dev.jsonl").write_text('{"text": "hi", "label": "a"}\n{"text": "ho", "label": \n')
    with pytest.raises(DataError) as error:
        generic.load(data_config("jsonl", tmp_path))
    assert str(error.value).startswith(f"{tmp_path / 'dev.jsonl'}:2: not valid JSON")
    (tmp_path / "dev.jsonl").write_text('{"text": "hi", "label": "z"}\n')
    with pytest.raises(DataError) as error:
        generic.load(data_config("jsonl", tmp_path))
    assert str(error.value) == f"{tmp_path / 'dev.jsonl'}:1: label 'z' is not one of ['a']"


def test_missing_column_and_missing_file(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.tsv").write_text("sentence\tlabel\nhi\ta\n")
    with pytest.raises(DataError) as error:
        generic.load(data_config("tsv", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path / 'train.tsv'}: missing column 'text' (columns: label, sentence)"
    )
    with pytest.raises(DataError) as error:
        generic.load(data_config("csv", tmp_path))
    assert str(error.value) == f"{tmp_path}: expected train.csv (data.dataset='csv')"
