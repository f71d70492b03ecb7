import pytest
from corpus_files import data_config, write_meld

from emoscale.data import meld
from emoscale.data.registry import load_corpus
from emoscale.errors import ConfigError, DataError

ROWS = {
    "train": [
        (
            "also I was the point person on my company’s transition from the KL-5 to GR-6 system.",
            "Chandler",
            "neutral",
            "neutral",
            0,
            0,
        ),
        ("You must’ve had your hands full.", "The Interviewer", "neutral", "neutral", 0, 1),
        ("Oh my God, that’s great, wow!", "Monica", "joy", "positive", 1, 0),
        ('He said "no", and left.', "Ross", "anger", "negative", 1, 1),
    ],
    "dev": [
        ("Oh.", "Rachel", "surprise", "positive", 0, 0),
        ("Ugh.", "Rachel", "disgust", "negative", 0, 1),
    ],
    "test": [
        (
            "Why do all you’re coffee mugs have numbers on the bottom?",
            "Mark",
            "surprise",
            "positive",
            0,
            0,
        )
    ],
}


def test_emotion_target_is_the_default(tmp_path):
    corpus = meld.load(data_config("meld", write_meld(tmp_path, ROWS)))
    assert {split: len(examples) for split, examples in corpus.splits.items()} == {
        "train": 4,
        "dev": 2,
        "test": 1,
    }
    assert corpus.info.label_names == (
        "neutral",
        "joy",
        "sadness",
        "fear",
        "anger",
        "surprise",
        "disgust",
    )
    assert [example.label for example in corpus.split("train")] == [0, 0, 1, 4]
    assert corpus.info.template == "Classify the emotion of the sentence to {labels}: {text}"
    assert corpus.dropped == {}


def test_sentiment_target(tmp_path):
    corpus = meld.load(data_config("meld", write_meld(tmp_path, ROWS), target="sentiment"))
    assert corpus.info.label_names == ("negative", "neutral", "positive")
    assert corpus.class_counts("train") == {"negative": 1, "neutral": 2, "positive": 1}
    assert corpus.class_counts("dev") == {"negative": 1, "neutral": 0, "positive": 1}


def test_ids_speakers_and_dialogues_carry_the_split(tmp_path):
    corpus = meld.load(data_config("meld", write_meld(tmp_path, ROWS)))
    example = corpus.split("train")[3]
    assert (example.id, example.speaker, example.dialogue_id, example.turn) == (
        "train-dia1_utt1",
        "Ross",
        "train-1",
        1,
    )
    assert example.text == 'He said "no", and left.'
    assert (
        corpus.split("dev")[0].dialogue_id == "dev-0"
    )  # MELD restarts dialogue ids in every split


def test_repairs_old_copies_c1_characters_mojibake_and_byte_order_mark(tmp_path):
    old = {split: list(rows) for split, rows in ROWS.items()}
    old["train"][1] = (
        "You must\x92ve had your hands full\x85",
        "The Interviewer",
        "neutral",
        "neutral",
        0,
        1,
    )
    old["train"][2] = ("Oh my God, thatâ€™s great, wow!", "Monica", "joy", "positive", 1, 0)
    corpus = meld.load(data_config("meld", write_meld(tmp_path, old, bom=True)))
    assert (tmp_path / "train_sent_emo.csv").read_bytes().startswith(b"\xef\xbb\xbfSr No.")
    assert [e.text for e in corpus.split("train")[1:3]] == [
        "You must’ve had your hands full…",
        "Oh my God, that’s great, wow!",
    ]


def test_reads_a_windows_1252_file(tmp_path):
    corpus = meld.load(data_config("meld", write_meld(tmp_path, ROWS, encoding="cp1252")))
    assert (tmp_path / "test_sent_emo.csv").read_bytes().count(b"\x92") == 1
    assert (
        corpus.split("test")[0].text == "Why do all you’re coffee mugs have numbers on the bottom?"
    )


def test_unknown_emotion_names_file_line_and_value(tmp_path):
    rows = {**ROWS, "dev": [ROWS["dev"][0], ("Ugh.", "Rachel", "disgusted", "negative", 0, 1)]}
    with pytest.raises(DataError) as error:
        meld.load(data_config("meld", write_meld(tmp_path, rows)))
    assert str(error.value) == (
        f"{tmp_path / 'dev_sent_emo.csv'}:3: label 'disgusted' is not one of "
        "['neutral', 'joy', 'sadness', 'fear', 'anger', 'surprise', 'disgust']"
    )


def test_wrong_columns_and_wrong_folder(tmp_path):
    write_meld(tmp_path, ROWS)
    (tmp_path / "dev_sent_emo.csv").write_text("text,label\nhi,joy\n")
    with pytest.raises(DataError) as error:
        meld.load(data_config("meld", tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'dev_sent_emo.csv'}: expected MELD's columns "
        "Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID; found text,label"
    )
    with pytest.raises(DataError) as error:
        meld.load(data_config("meld", tmp_path / "nowhere"))
    assert str(error.value) == f"data.path {tmp_path / 'nowhere'} is not a folder"


def test_unknown_target_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_corpus(data_config("meld", write_meld(tmp_path, ROWS), target="emotions"))
    assert (
        str(error.value)
        == "config key 'data.target': 'emotions' is not a target of meld; choose emotion, sentiment"
    )
