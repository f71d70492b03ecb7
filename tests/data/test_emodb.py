from collections import Counter

import pytest
from corpus_files import data_config, write_emodb

from emoscale.data import emodb
from emoscale.data.folds import check_disjoint
from emoscale.data.registry import load_corpus
from emoscale.errors import DataError

SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
# Every speaker reads a01 in all seven emotions, and b10 in anger twice (versions a and b).
NAMES = [f"{s}a01{letter}a.wav" for s in SPEAKERS for letter in "WLEAFTN"] + [
    f"{s}b10W{v}.wav" for s in SPEAKERS for v in "ab"
]


def test_labels_text_speaker_and_audio_from_the_file_name(tmp_path):
    write_emodb(tmp_path / "wav", NAMES)
    corpus = emodb.load(data_config("emodb", tmp_path))  # the corpus folder, holding wav/
    everything = {e.id: e for split in corpus.splits.values() for e in split}
    assert len(everything) == 90
    assert Counter(corpus.info.label_names[e.label] for e in everything.values()) == {
        "anger": 30,
        "boredom": 10,
        "disgust": 10,
        "fear": 10,
        "happiness": 10,
        "sadness": 10,
        "neutral": 10,
    }
    example = everything["12b10Wb"]
    assert (example.speaker, corpus.info.label_names[example.label]) == ("12", "anger")
    assert example.text == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    assert example.audio_path == "wav/12b10Wb.wav"  # relative to data.path
    assert everything["03a01Ea"].text == "Der Lappen liegt auf dem Eisschrank."
    assert corpus.info.language == "de"


def test_default_split_is_leave_speaker_03_out(tmp_path):
    corpus = emodb.load(data_config("emodb", write_emodb(tmp_path, NAMES)))  # the wav folder itself
    assert {e.speaker for e in corpus.split("test")} == {"03"}
    assert len({e.speaker for e in corpus.split("dev")}) == 1
    check_disjoint(corpus.splits, "speaker")
    assert corpus.split("test")[0].audio_path == "03a01Aa.wav"


def test_speaker_folds_test_every_speaker_once(tmp_path):
    write_emodb(tmp_path / "wav", NAMES)
    tested = []
    for fold in range(10):
        corpus = load_corpus(data_config("emodb", tmp_path, fold=fold))
        tested += sorted({e.speaker for e in corpus.split("test")})
        assert sum(len(split) for split in corpus.splits.values()) == 90
    assert tested == list(SPEAKERS)
    five = load_corpus(data_config("emodb", tmp_path, fold=1, num_folds=5))
    assert {e.speaker for e in five.split("test")} == {"08", "13"}


def test_names_outside_the_scheme_are_refused(tmp_path):
    write_emodb(tmp_path, ["03a01Xa.wav"])
    with pytest.raises(DataError) as error:
        emodb.load(data_config("emodb", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path / '03a01Xa.wav'}: emotion letter 'X' is not one of ['W', 'L', 'E', 'A', 'F', 'T', 'N']"
    )
    (tmp_path / "03a01Xa.wav").rename(tmp_path / "03a03Wa.wav")
    with pytest.raises(
        DataError, match=r"03a03Wa.wav: text code 'a03' is not one of \['a01', 'a02'"
    ):
        emodb.load(data_config("emodb", tmp_path))
    (tmp_path / "03a03Wa.wav").rename(tmp_path / "anger_01.wav")
    with pytest.raises(DataError) as error:
        emodb.load(data_config("emodb", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path / 'anger_01.wav'}: expected an EmoDB name SSTTTEV.wav (e.g. 03a01Fa.wav)"
    )


def test_a_folder_without_wav_files(tmp_path):
    (tmp_path / "lablaut").mkdir()
    (tmp_path / "erkennung.txt").write_text("")
    with pytest.raises(DataError) as error:
        emodb.load(data_config("emodb", tmp_path))
    assert (
        str(error.value)
        == f"{tmp_path}: expected EmoDB's wav/ folder of SSTTTEV.wav files; found erkennung.txt, lablaut/"
    )
