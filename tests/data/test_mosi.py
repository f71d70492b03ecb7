import pytest
from corpus_files import MMSA_COLUMNS, clip, data_config, write_label_csv

from emoscale.data import mosi
from emoscale.errors import DataError

# Scores chosen on the class edges: 0, the halves that round to even, values beyond +-3.
SCORES = [-3.0, -2.6, -1.4, -0.5, 0.0, 0.5, 1.5, 2.4, 2.5, 3.4]
ROWS = [
    clip("03bSnISJMiM", i + 1, f"anyhow it was really good {i}", s, "train")
    for i, s in enumerate(SCORES)
]
ROWS += [
    clip("0h-zjBukYpk", 1, "i thought it was fine", -1.8, "valid"),
    clip("1DmNV9C1hbY", 2, "not good", 0.0, "test"),
]


def _load(tmp_path, target=None):
    return mosi.load(data_config("mosi", write_label_csv(tmp_path, ROWS), target=target))


def test_splits_follow_the_mode_column(tmp_path):
    corpus = _load(tmp_path)
    assert {split: len(examples) for split, examples in corpus.splits.items()} == {
        "train": 10,
        "dev": 1,
        "test": 1,
    }
    first = corpus.split("train")[0]
    assert (first.id, first.text, first.dialogue_id, first.turn) == (
        "03bSnISJMiM_1",
        "anyhow it was really good 0",
        "03bSnISJMiM",
        1,
    )


def test_two_classes_count_zero_as_non_negative(tmp_path):
    corpus = _load(tmp_path)
    assert corpus.info.label_names == ("negative", "positive")
    assert [e.label for e in corpus.split("train")] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert corpus.split("test")[0].label == 1


def test_two_classes_without_zero_drop_and_count_it(tmp_path):
    corpus = _load(tmp_path, "2class_nonzero")
    assert [e.label for e in corpus.split("train")] == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert corpus.split("test") == []
    assert corpus.dropped == {"score 0 (2class_nonzero has no neutral)": 2}


def test_three_classes_by_sign(tmp_path):
    corpus = _load(tmp_path, "3class")
    assert [corpus.info.label_names[e.label] for e in corpus.split("train")] == [
        "negative",
        "negative",
        "negative",
        "negative",
        "neutral",
        "positive",
        "positive",
        "positive",
        "positive",
        "positive",
    ]


def test_seven_classes_clip_and_round_half_to_even(tmp_path):
    corpus = _load(tmp_path, "7class")
    # -3 -> -3, -2.6 -> -3, -1.4 -> -1, -0.5 -> 0, 0 -> 0, 0.5 -> 0, 1.5 -> 2, 2.4 -> 2, 2.5 -> 2, 3.4 -> 3
    assert [e.label - 3 for e in corpus.split("train")] == [-3, -3, -1, 0, 0, 0, 2, 2, 2, 3]
    assert corpus.info.label_words[0] == "Strongly negative"
    assert [mosi.label_of(score, "7class") for score in (-3.0, 3.0)] == [0, 6]


def test_errors_name_the_line(tmp_path):
    bad = [*ROWS[:2], {**ROWS[2], "label": "n/a"}]
    with pytest.raises(DataError) as error:
        mosi.load(data_config("mosi", write_label_csv(tmp_path, bad)))
    assert str(error.value) == f"{tmp_path / 'label.csv'}:4: label 'n/a' is not a number"
    with pytest.raises(DataError) as error:
        mosi.load(data_config("mosi", write_label_csv(tmp_path, [{**ROWS[0], "mode": "val"}])))
    assert (
        str(error.value)
        == f"{tmp_path / 'label.csv'}:2: mode 'val' is not one of ['train', 'valid', 'test']"
    )


def test_a_ch_sims_label_csv_is_refused(tmp_path):
    rows = [clip("video_0001", 1, "我觉得很好", 0.8, "train")]
    with pytest.raises(DataError) as error:
        mosi.load(data_config("mosi", write_label_csv(tmp_path, rows, MMSA_COLUMNS)))
    assert str(error.value) == (
        f"{tmp_path / 'label.csv'}:2: the text is Mandarin; this label.csv looks like CH-SIMS's (data.dataset=chsims)"
    )


def test_missing_columns_and_missing_file(tmp_path):
    (tmp_path / "label.csv").write_text("segment,text,score\nx,hi,1.0\n")
    with pytest.raises(DataError) as error:
        mosi.load(data_config("mosi", tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'label.csv'}: expected MMSA's columns video_id,clip_id,text,label,mode; found segment,text,score"
    )
    (tmp_path / "label.csv").unlink()
    (tmp_path / "Raw").mkdir()
    with pytest.raises(DataError) as error:
        mosi.load(data_config("mosi", tmp_path))
    assert str(error.value) == f"{tmp_path}: expected label.csv (CMU-MOSI (MMSA)); found Raw/"


def test_a_short_row_is_an_error_not_a_crash(tmp_path):
    write_label_csv(tmp_path, ROWS[:1])
    with (tmp_path / "label.csv").open("a") as handle:
        handle.write("03bSnISJMiM,2,cut off here\n")
    with pytest.raises(DataError) as error:
        mosi.load(data_config("mosi", tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'label.csv'}:3: 3 fields, the header has 9 (quote a text that holds a comma)"
    )
