from collections import Counter

import pytest
from corpus_files import data_config, write_iemocap

from emoscale.data import iemocap
from emoscale.data.folds import check_disjoint
from emoscale.data.registry import load_corpus
from emoscale.errors import DataError

IMPRO = [
    ("F000", "neu", "Excuse me."),
    ("M000", "hap", "Yeah."),
    ("F001", "exc", "Oh, that's wonderful!"),
    ("M001", "fru", "Is there a problem?"),
    ("F002", "ang", "Who told you to get in this line?"),
    ("M002", "sad", "I'm sorry."),
    ("F003", "xxx", "[LAUGHTER] Okay."),
]
SCRIPT = [("F000", "neu", "What's he going to say?"), ("M000", "sad", "I don't know.")]


def _dialogs() -> dict:
    dialogs = {}
    for session in range(1, 6):
        dialogs[f"Ses0{session}F_impro01"] = IMPRO
        dialogs[f"Ses0{session}M_script01_1"] = SCRIPT
    return dialogs


def test_four_classes_with_excited_merged_into_happy(tmp_path):
    corpus = iemocap.load(data_config("iemocap", write_iemocap(tmp_path, _dialogs())))
    everything = [e for split in corpus.splits.values() for e in split]
    assert len(everything) == 35
    assert Counter(corpus.info.label_names[e.label] for e in everything) == {
        "neutral": 10,
        "happy": 10,
        "angry": 5,
        "sad": 10,
    }
    assert corpus.dropped == {"label fru": 5, "label xxx": 5}
    assert corpus.info.paper_metric == "ua"


def test_speaker_session_turn_and_audio_of_an_utterance(tmp_path):
    corpus = iemocap.load(data_config("iemocap", write_iemocap(tmp_path, _dialogs())))
    excited = next(e for e in corpus.split("test") if e.id == "Ses05F_impro01_F001")
    assert (excited.speaker, excited.session, excited.dialogue_id, excited.turn) == (
        "Ses05_F",
        "Session5",
        "Ses05F_impro01",
        2,
    )
    assert excited.text == "Oh, that's wonderful!"
    assert excited.audio_path == "Session5/sentences/wav/Ses05F_impro01/Ses05F_impro01_F001.wav"
    assert (tmp_path / excited.audio_path).is_file()  # relative to data.path, as audio.py reads it
    sad = next(e for e in corpus.split("test") if e.id == "Ses05F_impro01_M002")
    assert (sad.speaker, sad.turn) == ("Ses05_M", 5)  # turns count the dropped frustration too


def test_default_split_tests_session_5_and_carves_dev_from_one_training_speaker(tmp_path):
    corpus = iemocap.load(data_config("iemocap", write_iemocap(tmp_path, _dialogs())))
    assert {e.session for e in corpus.split("test")} == {"Session5"}
    assert len({e.speaker for e in corpus.split("dev")}) == 1
    assert {e.session for e in corpus.split("train")} == {
        "Session1",
        "Session2",
        "Session3",
        "Session4",
    }
    check_disjoint(corpus.splits, "speaker")


def test_fold_i_tests_session_i_plus_one(tmp_path):
    write_iemocap(tmp_path, _dialogs(), wav=False)
    for fold in range(5):
        corpus = load_corpus(data_config("iemocap", tmp_path, fold=fold))
        assert {e.session for e in corpus.split("test")} == {f"Session{fold + 1}"}
        assert f"Session{fold + 1}" not in {
            e.session for e in corpus.split("train") + corpus.split("dev")
        }
        assert sum(len(split) for split in corpus.splits.values()) == 35
        assert corpus.split("test")[0].audio_path is None  # no sentences/wav folder


def test_published_label_distribution_gives_5531_utterances(tmp_path):
    # IEMOCAP's 10039 evaluated utterances by majority label (Busso et al. 2008, and the 4-class papers).
    published = {
        "neu": 1708,
        "hap": 595,
        "exc": 1041,
        "ang": 1103,
        "sad": 1084,
        "fru": 1849,
        "sur": 107,
        "fea": 40,
        "dis": 2,
        "oth": 3,
        "xxx": 2507,
    }
    codes = [code for code, count in published.items() for _ in range(count)]
    dialogs: dict = {f"Ses0{s}F_impro01": [] for s in range(1, 6)}
    for number, code in enumerate(codes):
        dialogs[f"Ses0{number % 5 + 1}F_impro01"].append(
            (f"{'FM'[number % 2]}{number:05d}", code, f"utterance {number}")
        )
    corpus = iemocap.load(data_config("iemocap", write_iemocap(tmp_path, dialogs, wav=False)))
    counts = Counter(
        corpus.info.label_names[e.label] for split in corpus.splits.values() for e in split
    )
    assert counts == {"neutral": 1708, "happy": 1636, "angry": 1103, "sad": 1084}
    assert sum(counts.values()) == 5531
    assert corpus.dropped == {
        "label fru": 1849,
        "label sur": 107,
        "label fea": 40,
        "label dis": 2,
        "label oth": 3,
        "label xxx": 2507,
    }


def test_unknown_code_missing_transcript_and_missing_session(tmp_path):
    write_iemocap(tmp_path, {**_dialogs(), "Ses02F_impro01": [("F000", "happy", "Hi.")]})
    where = tmp_path / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt"
    with pytest.raises(DataError) as error:
        iemocap.load(data_config("iemocap", tmp_path))
    assert str(error.value) == (
        f"{where}:3: label 'happy' is not an IEMOCAP code (ang, dis, exc, fea, fru, hap, neu, oth, sad, sur, xxx)"
    )
    write_iemocap(tmp_path, _dialogs())
    transcript = tmp_path / "Session2/dialog/transcriptions/Ses02F_impro01.txt"
    transcript.write_text(
        transcript.read_text().replace("Ses02F_impro01_F000 ", "Ses02F_impro01_F999 ")
    )
    with pytest.raises(DataError) as error:
        iemocap.load(data_config("iemocap", tmp_path))
    assert (
        str(error.value) == f"{where}:3: utterance Ses02F_impro01_F000 has no line in {transcript}"
    )
    (tmp_path / "Session5").rename(tmp_path / "session5")
    with pytest.raises(DataError) as error:
        iemocap.load(data_config("iemocap", tmp_path))
    assert str(error.value) == (
        f"{tmp_path}: expected IEMOCAP_full_release's Session1 .. Session5; "
        "found Session1/, Session2/, Session3/, Session4/, session5/"
    )
