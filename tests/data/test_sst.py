import pytest
from corpus_files import data_config

from emoscale.data import sst
from emoscale.errors import DataError


def _write(folder, prefix, lines_by_split):
    for split, lines in lines_by_split.items():
        (folder / f"{prefix}.{split}").write_text("".join(line + "\n" for line in lines))
    return folder


def test_fine_grained_labels_and_blank_lines(tmp_path):
    _write(
        tmp_path,
        "stsa.fine",
        {
            "train": ["4 a gorgeous film .", "", "0 a mess ."],
            "dev": ["2 it is a film ."],
            "test": ["3 nice ."],
        },
    )
    corpus = sst.load_sst5(data_config("sst5", tmp_path))
    assert [(e.id, e.text, e.label) for e in corpus.split("train")] == [
        ("train-1", "a gorgeous film .", 4),
        ("train-3", "a mess .", 0),
    ]
    assert corpus.info.label_words[4] == "Very positive"


def test_glue_tsv_fallback_uses_dev_as_test(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nhide new secretions \t0\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nit 's a charming journey . \t1\n")
    corpus = sst.load_sst2(data_config("sst2", tmp_path))
    assert corpus.split("test") == corpus.split("dev")
    assert [(e.text, e.label) for e in corpus.split("dev")] == [("it 's a charming journey .", 1)]


def test_label_out_of_range_and_wrong_layout(tmp_path):
    _write(
        tmp_path,
        "stsa.binary",
        {"train": ["1 good .", "2 what ."], "dev": ["0 bad ."], "test": ["1 fine ."]},
    )
    with pytest.raises(DataError) as error:
        sst.load_sst2(data_config("sst2", tmp_path))
    assert str(error.value) == f"{tmp_path / 'stsa.binary.train'}:2: label '2' is not one of 0..1"
    with pytest.raises(DataError) as error:
        sst.load_sst5(data_config("sst5", tmp_path))
    assert str(error.value) == (
        f"{tmp_path}: expected stsa.fine.train, stsa.fine.dev, stsa.fine.test; "
        "found stsa.binary.dev, stsa.binary.test, stsa.binary.train"
    )


def test_a_line_without_a_label(tmp_path):
    _write(tmp_path, "stsa.binary", {"train": ["good ."], "dev": ["0 bad ."], "test": ["1 fine ."]})
    with pytest.raises(DataError) as error:
        sst.load_sst2(data_config("sst2", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path / 'stsa.binary.train'}:1: expected '<label> <sentence>', got 'good .'"
    )


def test_train_on_dev_refuses_a_dev_split_that_is_also_test(tmp_path):
    # GLUE's layout has no labelled test: dev stands in for it, so dev must not train.
    from emoscale.data import load_corpus
    from emoscale.errors import ConfigError

    (tmp_path / "train.tsv").write_text("sentence\tlabel\nhide new secretions \t0\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nit 's a charming journey . \t1\n")
    with pytest.raises(ConfigError) as error:
        load_corpus(data_config("sst2", tmp_path, train_on_dev=True))
    assert str(error.value) == (
        "config key 'data.train_on_dev': sst2's dev split is also its test split here (GLUE's "
        "SST-2 layout has no labelled test), so dev cannot train"
    )
