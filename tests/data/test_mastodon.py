import pytest
from corpus_files import data_config, write_mastodon

from emoscale.data import mastodon
from emoscale.data.folds import check_disjoint, split_fold
from emoscale.errors import DataError


def _dialogues(count: int, prefix: str) -> list[str]:
    """`count` dialogues of 1 to 3 posts cycling through the three sentiments."""
    lines = []
    for d in range(count):
        for position in range(d % 3 + 1):
            symbol = "*+-"[(d + position) % 3]
            lines.append(f"{position} {symbol}_I {prefix} post {d} {position} :)")
    return lines


def test_reads_posts_dialogues_and_sentiments(tmp_path):
    write_mastodon(
        tmp_path,
        [
            "0 +_I i can finally finish !",
            "1 -_I this sounds bad",
            "2 *_D oh i thought so",
            "0 *_S go outside",
        ],
        ["0 -_Q anxious ? 😞", "1 -_A yeah a LOT tbh"],
    )
    corpus = mastodon.load(data_config("mastodon", tmp_path))
    posts = sorted(corpus.split("train") + corpus.split("dev"), key=lambda e: e.id)
    assert [(e.id, e.text, corpus.info.label_names[e.label]) for e in posts] == [
        ("train-0-0", "i can finally finish !", "positive"),
        ("train-0-1", "this sounds bad", "negative"),
        ("train-0-2", "oh i thought so", "neutral"),
        ("train-1-0", "go outside", "neutral"),
    ]
    assert [(e.dialogue_id, e.turn, e.speaker) for e in corpus.split("test")] == [
        ("test-0", 0, None),
        ("test-0", 1, None),
    ]
    assert corpus.class_counts("test") == {"negative": 2, "neutral": 0, "positive": 0}


def test_dev_is_a_tenth_of_the_training_dialogues_whole(tmp_path):
    write_mastodon(tmp_path, _dialogues(30, "train"), _dialogues(5, "test"))
    corpus = mastodon.load(data_config("mastodon", tmp_path))
    dev_dialogues = {e.dialogue_id for e in corpus.split("dev")}
    assert len(dev_dialogues) == 3
    assert len({e.dialogue_id for e in corpus.split("train")}) == 27
    check_disjoint(corpus.splits, "dialogue_id")
    assert [e.id for e in mastodon.load(data_config("mastodon", tmp_path)).split("dev")] == [
        e.id for e in corpus.split("dev")
    ]


def test_ten_folds_hold_out_every_training_dialogue_once(tmp_path):
    write_mastodon(tmp_path, _dialogues(30, "train"), _dialogues(5, "test"))
    corpus = mastodon.load(data_config("mastodon", tmp_path))
    held_out = []
    for fold in range(10):
        split = split_fold(corpus, data_config("mastodon", tmp_path, fold=fold))
        assert [e.id for e in split.split("test")] == [e.id for e in corpus.split("test")]
        assert len(split.split("train")) + len(split.split("dev")) == 60
        held_out += sorted({e.dialogue_id for e in split.split("dev")})
    assert sorted(held_out) == sorted(f"train-{d}" for d in range(30))
    fold_0 = split_fold(corpus, data_config("mastodon", tmp_path, fold=0))
    assert [e.id for e in fold_0.split("dev")] == [e.id for e in corpus.split("dev")]


def test_unknown_sentiment_and_broken_positions_name_the_line(tmp_path):
    write_mastodon(tmp_path, ["0 +_I fine", "1 ?_I what"], ["0 *_I ok"])
    with pytest.raises(DataError) as error:
        mastodon.load(data_config("mastodon", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path / 'datatrainJoint.txt'}:2: label '?' is not one of ['negative', 'neutral', 'positive']"
    )
    write_mastodon(tmp_path, ["0 +_I fine", "2 -_I skipped one"], ["0 *_I ok"])
    with pytest.raises(DataError) as error:
        mastodon.load(data_config("mastodon", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path / 'datatrainJoint.txt'}:2: position 2 follows position 0 of the same dialogue"
    )
    write_mastodon(tmp_path, ["+_I no position"], ["0 *_I ok"])
    with pytest.raises(DataError) as error:
        mastodon.load(data_config("mastodon", tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'datatrainJoint.txt'}:1: expected '<position> <sentiment>_<act> <tokens>', got '+_I no position '"
    )


def test_a_folder_without_the_joint_files(tmp_path):
    (tmp_path / "datatrainJoint.idx").write_text("0 1_2 4915\n")
    with pytest.raises(DataError) as error:
        mastodon.load(data_config("mastodon", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path}: expected datatrainJoint.txt, datatestJoint.txt (Mastodon); found datatrainJoint.idx"
    )
