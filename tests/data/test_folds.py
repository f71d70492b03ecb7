import pytest
from corpus_files import data_config

from emoscale.config import load_config
from emoscale.data.examples import Example
from emoscale.data.folds import (
    carve_dev,
    check_disjoint,
    hold_out_dialogues,
    leave_one_session_out,
    leave_speakers_out,
    natural_key,
    num_folds,
)
from emoscale.data.registry import load_corpus
from emoscale.errors import ConfigError, DataError


def _iemocap_like() -> list[Example]:
    examples = []
    for session in range(1, 6):
        for gender in "FM":
            for n in range(10):
                speaker = f"Ses0{session}_{gender}"
                examples.append(
                    Example(
                        f"Ses0{session}F_impro01_{gender}{n:03d}",
                        "hi",
                        n % 4,
                        speaker,
                        f"Ses0{session}F_impro01",
                        n,
                        f"Session{session}",
                    )
                )
    return examples


def test_leave_one_session_out_is_deterministic_and_speaker_disjoint():
    examples = _iemocap_like()
    for fold in range(5):
        splits = leave_one_session_out(examples, fold)
        assert {e.session for e in splits["test"]} == {f"Session{fold + 1}"}
        assert len({e.speaker for e in splits["dev"]}) == 1  # one speaker is closest to a tenth
        assert sorted(e.id for split in splits.values() for e in split) == sorted(
            e.id for e in examples
        )
        shuffled = leave_one_session_out(
            list(reversed(examples)), fold
        )  # input order does not matter
        assert {name: {e.id for e in split} for name, split in shuffled.items()} == {
            name: {e.id for e in split} for name, split in splits.items()
        }


def test_leave_speakers_out_deals_sorted_speakers_in_turn():
    examples = [
        Example(f"{s}-{n}", "x", 0, speaker=s)
        for s in ("s1", "s2", "s3", "s10", "s11", "s12")
        for n in range(3)
    ]
    tested = [
        sorted({e.speaker for e in leave_speakers_out(examples, fold, 3)["test"]}, key=natural_key)
        for fold in range(3)
    ]
    assert tested == [["s1", "s10"], ["s2", "s11"], ["s3", "s12"]]
    with pytest.raises(DataError) as error:
        leave_speakers_out(examples, 0, 7)
    assert str(error.value) == "7 speaker folds need at least 7 speakers; the corpus has 6"


def test_carve_dev_takes_whole_groups_and_leaves_one_in_train():
    examples = [Example(f"{s}-{n}", "x", 0, speaker=s) for s in "abcdefghij" for n in range(5)]
    train, dev = carve_dev(examples, "speaker", seed=3)
    assert len({e.speaker for e in dev}) == 1 and len(dev) == 5
    assert not {e.speaker for e in dev} & {e.speaker for e in train}
    with pytest.raises(DataError) as error:
        carve_dev(examples[:5], "speaker", seed=0)
    assert (
        str(error.value) == "cannot carve a dev split: the training side has 1 speaker(s), need 2"
    )


def test_check_disjoint_names_the_value_and_both_splits():
    a, b = Example("1", "x", 0, speaker="Ses01_F"), Example("2", "y", 0, speaker="Ses01_F")
    with pytest.raises(DataError) as error:
        check_disjoint({"train": [a], "dev": [], "test": [b]}, "speaker")
    assert str(error.value) == "speaker 'Ses01_F' is in both train and test"
    with pytest.raises(DataError) as error:
        check_disjoint({"train": [Example("3", "z", 0)]}, "speaker")
    assert str(error.value) == "example '3' has no speaker; folds need a speaker on every example"


def test_hold_out_dialogues_parts_are_disjoint_and_cover_everything():
    examples = [
        Example(f"d{d}-{t}", "x", 0, dialogue_id=f"d{d}", turn=t)
        for d in range(23)
        for t in range(2)
    ]
    held = [
        e.dialogue_id
        for fold in range(10)
        for e in hold_out_dialogues(examples, fold, 10)[1]
        if e.turn == 0
    ]
    assert sorted(held, key=natural_key) == [f"d{d}" for d in range(23)]


def test_num_folds_per_corpus():
    config = data_config("x", "x")
    assert [num_folds(name, config) for name in ("iemocap", "emodb", "mastodon", "csv")] == [
        5,
        10,
        10,
        5,
    ]
    assert num_folds("emodb", data_config("emodb", "x", num_folds=5)) == 5
    with pytest.raises(ConfigError) as error:
        num_folds("iemocap", data_config("iemocap", "x", num_folds=10))
    assert (
        str(error.value)
        == "config key 'data.num_folds': IEMOCAP's folds are its 5 sessions (got 10)"
    )
    with pytest.raises(ConfigError) as error:
        num_folds("meld", config)
    assert str(error.value) == (
        "config key 'data.fold': dataset 'meld' has official splits and no folds; "
        "folds exist for iemocap, emodb, mastodon, and csv/tsv/jsonl/hf corpora with a speaker column"
    )


def _write_generic(folder, speakers_by_split):
    for split, speakers in speakers_by_split.items():
        rows = ["text,label,speaker,dialogue_id"] + [
            f"hello {s} {n},{'pos' if n % 2 else 'neg'},{s},{s}-d"
            for s in speakers
            for n in range(4)
        ]
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_generic_corpus_with_a_speaker_column(tmp_path):
    _write_generic(
        tmp_path,
        {
            "train": ["ann", "bob", "cat", "dan"],
            "dev": ["eve", "fay"],
            "test": ["gus", "hal", "ivy", "jon"],
        },
    )
    seen = []
    for fold in range(5):
        corpus = load_corpus(data_config("csv", tmp_path, fold=fold))
        check_disjoint(corpus.splits, "speaker")
        seen += sorted({e.speaker for e in corpus.split("test")})
        assert sum(len(split) for split in corpus.splits.values()) == 40
    assert sorted(seen) == ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon"]
    with pytest.raises(ConfigError) as error:
        load_corpus(data_config("csv", tmp_path, fold=5))
    assert str(error.value) == "config key 'data.fold': 5 is out of range; csv has 5 folds (0..4)"


def test_generic_corpus_without_speakers_cannot_fold(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.csv").write_text("text,label\nhi,pos\nho,neg\n")
    with pytest.raises(DataError) as error:
        load_corpus(data_config("csv", tmp_path, fold=0))
    assert (
        str(error.value) == "example 'dev-0' has no speaker; folds need a speaker on every example"
    )


def test_config_keys_are_typed():
    config = load_config(
        overrides=[
            "data.fold=2",
            "data.num_folds=5",
            "data.target=sentiment",
            "prompt.context_turns=3",
        ]
    )
    assert (
        config.data.fold,
        config.data.num_folds,
        config.data.target,
        config.prompt.context_turns,
    ) == (2, 5, "sentiment", 3)
    assert load_config().prompt.context_turns == 0
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["data.fold=-1"])
    assert (
        str(error.value)
        == "config key 'data.fold': Input should be greater than or equal to 0 (got -1)"
    )


def test_ids_shared_between_split_files_cannot_fold(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.csv").write_text(
            f"uid,text,label,speaker\nu1,hi,pos,{split}-a\nu2-{split},ho,neg,{split}-b\n"
        )
    with pytest.raises(DataError) as error:
        load_corpus(data_config("csv", tmp_path, fold=0, id_column="uid", num_folds=2))
    assert (
        str(error.value) == "example id 'u1' is in two splits; folds need ids unique across splits"
    )


def test_train_on_dev_adds_the_dev_speakers_to_training_and_keeps_dev(tmp_path):
    _write_generic(tmp_path, {"train": ["ann", "bob", "cat", "dan", "eve", "fay"],
                              "dev": ["gus", "hal"], "test": ["ivy", "jon"]})  # fmt: skip
    held_out = load_corpus(data_config("csv", tmp_path, fold=1))
    joined = load_corpus(data_config("csv", tmp_path, fold=1, train_on_dev=True))
    assert held_out.split("dev") and joined.split("dev") == held_out.split("dev")
    assert joined.split("test") == held_out.split("test")
    assert joined.split("train") == held_out.split("train") + held_out.split("dev")
    assert {e.speaker for e in joined.split("train")} == {
        e.speaker for name in ("train", "dev") for e in held_out.split(name)
    }
