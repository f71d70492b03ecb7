import pytest
from corpus_files import data_config, write_friends, write_meld

from emoscale.data import friends
from emoscale.errors import DataError

SPLITS = {
    "train": [
        [
            ("Phoebe", "Oh my God, he\x92s lost it.", "non-neutral"),
            ("Monica", "What?", "surprise"),
            ("Ross", "Or! Or, we could go to the bank.", "neutral"),
            ("Chandler", "You\x92re a genius!", "joy"),
        ],
        [
            ("Joey", "Aww, man, now we won\x92t be bank buddies!", "sadness"),
            ("Joey\x92s Date", "Hey.", "anger"),
        ],
    ],
    "dev": [[("Rachel", "Ew\x85", "disgust"), ("Ross", "Fine.", "fear")]],
    "test": [[("Monica", "Hi.", "neutral"), ("All", "Hey!", "non-neutral")]],
}


def test_reads_the_three_splits_and_drops_non_neutral(tmp_path):
    corpus = friends.load(data_config("friends", write_friends(tmp_path, SPLITS)))
    assert {split: len(examples) for split, examples in corpus.splits.items()} == {
        "train": 5,
        "dev": 2,
        "test": 1,
    }
    assert corpus.dropped == {"non-neutral (no majority emotion)": 2}
    assert corpus.class_counts("train") == {
        "neutral": 1,
        "joy": 1,
        "sadness": 1,
        "fear": 0,
        "anger": 1,
        "surprise": 1,
        "disgust": 0,
    }
    assert corpus.info.label_words == (
        "Neutral",
        "Joy",
        "Sadness",
        "Fear",
        "Anger",
        "Surprise",
        "Disgust",
    )
    assert corpus.info.paper_metric == "macro_f1"  # the caption of the LLM paper's Table 5


def test_repairs_windows_1252_apostrophes_in_text_and_speakers(tmp_path):
    write_friends(tmp_path, SPLITS)
    assert "\\u0092" in (tmp_path / "friends_train.json").read_text()  # the real files' escape
    train = friends.load(data_config("friends", tmp_path)).split("train")
    assert train[2].text == "You’re a genius!"
    assert train[3].text == "Aww, man, now we won’t be bank buddies!"
    assert train[4].speaker == "Joey’s Date"
    assert friends.load(data_config("friends", tmp_path)).split("dev")[0].text == "Ew…"


def test_keeps_dialogue_and_turn_positions_across_dropped_utterances(tmp_path):
    train = friends.load(data_config("friends", write_friends(tmp_path, SPLITS))).split("train")
    first = train[0]
    assert (first.id, first.speaker, first.dialogue_id, first.turn) == (
        "train-0-1",
        "Monica",
        "train-0",
        1,
    )
    assert [(e.dialogue_id, e.turn) for e in train] == [
        ("train-0", 1),
        ("train-0", 2),
        ("train-0", 3),
        ("train-1", 0),
        ("train-1", 1),
    ]


def test_unknown_emotion_names_the_file_dialogue_utterance_and_value(tmp_path):
    write_friends(tmp_path, {**SPLITS, "dev": [[("Ross", "Fine.", "Fear")]]})
    with pytest.raises(DataError) as error:
        friends.load(data_config("friends", tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'friends_dev.json'}: dialogue 0, utterance 0: label 'Fear' is not one of "
        "['neutral', 'joy', 'sadness', 'fear', 'anger', 'surprise', 'disgust']"
    )


def test_missing_key_and_wrong_shape(tmp_path):
    write_friends(tmp_path, SPLITS)
    (tmp_path / "friends_test.json").write_text('[[{"speaker": "A", "utterance": "Hi."}]]')
    with pytest.raises(DataError) as error:
        friends.load(data_config("friends", tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'friends_test.json'}: dialogue 0, utterance 0: missing key 'emotion' "
        "(expected speaker, utterance, emotion)"
    )
    (tmp_path / "friends_test.json").write_text('{"speaker": "A"}')
    with pytest.raises(DataError, match="expected a list of dialogues"):
        friends.load(data_config("friends", tmp_path))


def test_a_meld_folder_is_not_friends(tmp_path):
    write_meld(
        tmp_path, {s: [("Hi.", "Joey", "joy", "positive", 0, 0)] for s in ("train", "dev", "test")}
    )
    with pytest.raises(DataError) as error:
        friends.load(data_config("friends", tmp_path))
    assert str(error.value) == (
        f"{tmp_path}: expected friends_train.json, friends_dev.json, friends_test.json "
        "(EmotionLines Friends); found dev_sent_emo.csv, test_sent_emo.csv, train_sent_emo.csv"
    )


def test_non_neutral_turns_stay_in_their_dialogue_as_context(tmp_path):
    from emoscale.data.context import split_contexts

    corpus = friends.load(data_config("friends", write_friends(tmp_path, SPLITS)))
    assert [(e.id, e.label) for e in corpus.context_only["train"]] == [("train-0-0", -1)]
    assert [e.id for e in corpus.context_only["test"]] == ["test-0-1"]
    contexts = split_contexts(corpus.split("train"), 2, corpus.context_only["train"])
    assert contexts[0] == [("Phoebe", "Oh my God, he’s lost it.")]  # Monica's turn follows it


def test_an_empty_unscored_turn_is_dropped_not_an_error(tmp_path):
    splits = {**SPLITS, "dev": [[("Rachel", "", "non-neutral"), ("Ross", "Fine.", "fear")]]}
    corpus = friends.load(data_config("friends", write_friends(tmp_path, splits)))
    assert [e.text for e in corpus.split("dev")] == ["Fine."]
    assert corpus.context_only["dev"] == []  # nothing said: no context either


def test_train_on_dev_keeps_dev_dialogues_context_when_they_train(tmp_path):
    from emoscale.data import load_corpus
    from emoscale.data.context import split_contexts

    splits = dict(SPLITS, dev=[[("A", "hello there", "non-neutral"), ("B", "you again", "joy")]])
    folder = write_friends(tmp_path, splits)
    corpus = load_corpus(data_config("friends", folder, train_on_dev=True))
    trained = [e for e in corpus.split("train") if e.id.startswith("dev-")]
    contexts = split_contexts(corpus.split("train"), 2, corpus.context_only["train"])
    assert [contexts[corpus.split("train").index(e)] for e in trained] == [[("A", "hello there")]]
