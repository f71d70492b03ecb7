import pytest
from corpus_files import MMSA_COLUMNS, clip, data_config, write_label_csv

from emoscale.data import chsims
from emoscale.errors import DataError

# The eleven scores a mean of five annotators' -1/0/1 can take.
SCORES = [-1.0, -0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
ROWS = [clip("video_0001", i + 1, f"我觉得这个{i}", s, "train") for i, s in enumerate(SCORES)]
ROWS += [
    clip("video_0002", 1, "还行吧", 0.0, "valid"),
    clip("video_0003", 1, "太差了", -1.0, "test"),
]


def _load(tmp_path, target=None):
    folder = write_label_csv(tmp_path, ROWS, MMSA_COLUMNS, bom=True)
    return chsims.load(data_config("chsims", folder, target=target))


def test_five_classes_use_the_published_bins(tmp_path):
    corpus = _load(tmp_path, "5class")
    bins = {}
    for example, score in zip(corpus.split("train"), SCORES, strict=True):
        bins.setdefault(corpus.info.label_names[example.label], []).append(score)
    assert bins == {
        "negative": [-1.0, -0.8],
        "weakly negative": [-0.6, -0.4, -0.2],
        "neutral": [0.0],
        "weakly positive": [0.2, 0.4, 0.6],
        "positive": [0.8, 1.0],
    }
    assert corpus.info.label_words == ("消极", "弱消极", "中性", "弱积极", "积极")


def test_two_classes_count_zero_as_negative_like_mmsa(tmp_path):
    corpus = _load(tmp_path)
    assert [e.label for e in corpus.split("train")] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert corpus.info.label_words == ("消极", "积极")


def test_three_classes(tmp_path):
    corpus = _load(tmp_path, "3class")
    assert [e.label for e in corpus.split("train")] == [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2]


def test_mandarin_text_prompt_and_splits(tmp_path):
    corpus = _load(tmp_path)
    assert (tmp_path / "label.csv").read_bytes().startswith(b"\xef\xbb\xbfvideo_id")
    assert {split: len(examples) for split, examples in corpus.splits.items()} == {
        "train": 11,
        "dev": 1,
        "test": 1,
    }
    assert corpus.info.language == "zh"
    assert (
        corpus.info.template.format(labels="消极、积极", text="还行吧")
        == "将句子的情感分类为消极、积极：还行吧"
    )
    assert corpus.split("dev")[0].id == "video_0002_1"
    assert corpus.split("dev")[0].text == "还行吧"


def test_a_score_outside_minus_one_to_one_is_refused(tmp_path):
    rows = [clip("03bSnISJMiM", 1, "anyhow it was really good", 2.4, "train")]
    with pytest.raises(DataError) as error:
        chsims.load(data_config("chsims", write_label_csv(tmp_path, rows)))
    assert (
        str(error.value)
        == f"{tmp_path / 'label.csv'}:2: label 2.4 is outside CH-SIMS's [-1, 1] (a CMU-MOSI label.csv?)"
    )


def test_duplicate_clips_are_refused(tmp_path):
    rows = [ROWS[0], {**ROWS[0], "mode": "test"}]
    with pytest.raises(DataError) as error:
        chsims.load(data_config("chsims", write_label_csv(tmp_path, rows, MMSA_COLUMNS)))
    assert str(error.value) == f"{tmp_path / 'label.csv'}: duplicate example id 'video_0001_1'"
