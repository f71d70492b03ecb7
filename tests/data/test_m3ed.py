import pytest
from corpus_files import data_config, write_m3ed

from emoscale.data import m3ed
from emoscale.errors import DataError

SERIES = {
    "anjia": {
        "anjia_1": (
            {"A": "朱闪闪", "B": "房似锦"},
            [
                ("anjia_1_10", "A", "那我走了", "Sad"),
                ("anjia_1_1", "A", "你先把衣服换了", "Neutral"),
                ("anjia_1_2", "B", "我不换", "Anger"),
            ],
        ),
        "anjia_2": ({"A": "房似锦"}, [("anjia_2_1", "A", "太好了", "Happy")]),
    },
    "shaonianpai": {
        "shaonianpai_1": ({"A": "王胜男"}, [("shaonianpai_1_1", "A", "什么？", "Surprise")])
    },
    "huanlesong": {
        "huanlesong_1": (
            {"A": "安迪", "B": "曲筱绡"},
            [
                ("huanlesong_1_1", "B", "真恶心", "Disgust"),
                ("huanlesong_1_2", "A", "我害怕", "Fear"),
            ],
        )
    },
}
SPLITS = {"train": ["anjia"], "val": ["shaonianpai"], "test": ["huanlesong"]}


def test_splits_follow_the_series_lists(tmp_path):
    corpus = m3ed.load(data_config("m3ed", write_m3ed(tmp_path, SERIES, SPLITS)))
    assert {split: len(examples) for split, examples in corpus.splits.items()} == {
        "train": 4,
        "dev": 1,
        "test": 2,
    }
    assert corpus.class_counts("train") == {
        "happy": 1,
        "surprise": 0,
        "sad": 1,
        "disgust": 0,
        "anger": 1,
        "fear": 0,
        "neutral": 1,
    }
    assert corpus.class_counts("test") == {
        "happy": 0,
        "surprise": 0,
        "sad": 0,
        "disgust": 1,
        "anger": 0,
        "fear": 1,
        "neutral": 0,
    }
    assert (corpus.info.language, corpus.info.paper_metric) == ("zh", "weighted_f1")
    assert corpus.info.label_words == ("高兴", "惊讶", "悲伤", "厌恶", "愤怒", "恐惧", "中性")


def test_utterances_are_ordered_by_their_number_and_speakers_named(tmp_path):
    train = m3ed.load(data_config("m3ed", write_m3ed(tmp_path, SERIES, SPLITS))).split("train")
    assert [(e.id, e.turn, e.speaker, e.dialogue_id) for e in train[:3]] == [
        ("anjia_1_1", 0, "朱闪闪", "anjia_1"),
        ("anjia_1_2", 1, "房似锦", "anjia_1"),
        ("anjia_1_10", 2, "朱闪闪", "anjia_1"),
    ]
    assert train[0].text == "你先把衣服换了"


def test_unknown_emotion_names_the_utterance_and_value(tmp_path):
    series = {
        **SERIES,
        "shaonianpai": {
            "shaonianpai_1": ({"A": "王胜男"}, [("shaonianpai_1_1", "A", "什么？", "Surprised")])
        },
    }
    with pytest.raises(DataError) as error:
        m3ed.load(data_config("m3ed", write_m3ed(tmp_path, series, SPLITS)))
    assert str(error.value) == (
        f"{tmp_path / 'annotation.json'}: utterance shaonianpai_1_1: label 'Surprised' is not one of "
        "['happy', 'surprise', 'sad', 'disgust', 'anger', 'fear', 'neutral']"
    )


def test_a_series_in_no_split_and_a_series_in_two(tmp_path):
    with pytest.raises(DataError) as error:
        m3ed.load(data_config("m3ed", write_m3ed(tmp_path, SERIES, {**SPLITS, "test": []})))
    assert str(error.value) == (
        f"{tmp_path / 'annotation.json'}: series 'huanlesong' is in none of splitInfo/movie_list_train.txt, "
        "splitInfo/movie_list_val.txt, splitInfo/movie_list_test.txt"
    )
    with pytest.raises(DataError) as error:
        m3ed.load(
            data_config(
                "m3ed", write_m3ed(tmp_path, SERIES, {**SPLITS, "test": ["huanlesong", "anjia"]})
            )
        )
    assert (
        str(error.value)
        == f"{tmp_path / 'splitInfo/movie_list_test.txt'}: series 'anjia' is also in the train list"
    )


def test_a_folder_without_split_files(tmp_path):
    (tmp_path / "annotation.json").write_text("{}")
    with pytest.raises(DataError) as error:
        m3ed.load(data_config("m3ed", tmp_path))
    assert str(error.value) == (
        f"{tmp_path}: expected annotation.json, splitInfo/movie_list_train.txt, splitInfo/movie_list_val.txt, "
        "splitInfo/movie_list_test.txt (M3ED); found annotation.json"
    )
