"""data.dataset=hf: Hugging Face `datasets` folders (save_to_disk, Parquet, Arrow, JSONL) as corpora."""

from __future__ import annotations

import shutil

import pytest
from corpus_files import data_config
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from emoscale import train
from emoscale.config import load_config
from emoscale.data import generic, hf_datasets, load_corpus
from emoscale.errors import DataError

EMOTIONS = ["neutral", "joy", "anger"]  # a ClassLabel order that sorting would change
FEATURES = Features(
    {
        "utterance": Value("string"),
        "emotion": ClassLabel(names=EMOTIONS),
        "speaker": Value("string"),
        "dialogue_id": Value("string"),
        "turn": Value("int32"),
        "uid": Value("string"),
    }
)


def dialogue(split: str, labels: list[int]) -> Dataset:
    rows = {
        "utterance": [f"{split} line {n}" for n in range(len(labels))],
        "emotion": labels,
        "speaker": [("Ann", "Bob", "Cid", "Dee")[n % 4] for n in range(len(labels))],
        "dialogue_id": [f"{split}-d{n // 2}" for n in range(len(labels))],
        "turn": [n % 2 for n in range(len(labels))],
        "uid": [f"{split}-{n}" for n in range(len(labels))],
    }
    return Dataset.from_dict(rows, features=FEATURES)


def emotion_folder(tmp_path, **splits: list[int]):
    folder = tmp_path / "emotions"
    DatasetDict({name: dialogue(name, labels) for name, labels in splits.items()}).save_to_disk(
        str(folder)
    )
    return folder


def columns(**keys):
    return {"text_column": "utterance", "label_column": "emotion", **keys}


def test_save_to_disk_uses_classlabel_names_and_validation_as_dev(tmp_path):
    folder = emotion_folder(
        tmp_path, train=[0, 1, 2, 1], validation=[2, 0], test=[1, 1], unsupervised=[0]
    )
    corpus = hf_datasets.load(data_config("hf", folder, id_column="uid", **columns()))
    assert corpus.info.label_names == ("neutral", "joy", "anger")  # the ClassLabel's order
    assert corpus.info.label_words == ("Neutral", "Joy", "Anger")
    assert sorted(corpus.splits) == ["dev", "test", "train"]  # `unsupervised` is not read
    assert [e.label for e in corpus.split("train")] == [0, 1, 2, 1]
    first, second = corpus.split("dev")
    assert (first.id, first.text, first.label, first.speaker, first.dialogue_id, first.turn) == (
        "validation-0",
        "validation line 0",
        2,
        "Ann",
        "validation-d0",
        0,
    )
    assert (second.speaker, second.turn) == ("Bob", 1)


def test_data_labels_reorders_a_classlabel_by_name(tmp_path):
    folder = emotion_folder(tmp_path, train=[0, 1, 2], dev=[2], test=[1])
    config = data_config("hf", folder, labels=["anger", "joy", "neutral"], **columns())
    corpus = hf_datasets.load(config)
    assert [e.label for e in corpus.split("train")] == [2, 1, 0]
    config.labels = ["joy", "neutral"]
    with pytest.raises(DataError) as error:
        hf_datasets.load(config)
    assert (
        str(error.value) == f"{folder / 'train'}[2]: label 'anger' is not one of ['joy', 'neutral']"
    )


def test_parquet_shards_in_the_hubs_data_folder(tmp_path):
    data = tmp_path / "hub" / "data"
    data.mkdir(parents=True)
    rows = {"text": ["good", "bad", "fine", "awful"], "label": ["pos", "neg", "pos", "neg"]}
    Dataset.from_dict(rows).select(range(2)).to_parquet(str(data / "train-00000-of-00002.parquet"))
    Dataset.from_dict(rows).select(range(2, 4)).to_parquet(
        str(data / "train-00001-of-00002.parquet")
    )
    Dataset.from_dict(rows).to_parquet(str(data / "validation-00000-of-00001.parquet"))
    Dataset.from_dict(rows).to_parquet(str(data / "test-00000-of-00001.parquet"))
    corpus = hf_datasets.load(data_config("hf", tmp_path / "hub"))
    assert corpus.info.label_names == ("neg", "pos")  # strings: sorted, as the CSV loader does
    assert [e.text for e in corpus.split("train")] == ["good", "bad", "fine", "awful"]
    assert [e.label for e in corpus.split("train")] == [1, 0, 1, 0]


def test_a_classlabel_survives_parquet_and_arrow_files(tmp_path):
    for extension in ("parquet", "arrow"):
        folder = tmp_path / extension
        folder.mkdir()
        for split, labels in {"train": [2, 0], "dev": [1], "test": [0]}.items():
            if extension == "parquet":
                dialogue(split, labels).to_parquet(str(folder / f"{split}.parquet"))
            else:  # save_to_disk's own Arrow file, copied out
                dialogue(split, labels).save_to_disk(str(tmp_path / "saved" / split))
                shutil.copy(
                    next((tmp_path / "saved" / split).glob("*.arrow")), folder / f"{split}.arrow"
                )
        corpus = hf_datasets.load(data_config("hf", folder, **columns()))
        assert corpus.info.label_names == tuple(EMOTIONS), extension
        assert [e.label for e in corpus.split("train")] == [2, 0], extension


def test_integer_labels_in_jsonl_are_read_as_numbers_in_order(tmp_path):
    for split in ("train", "dev", "test"):
        Dataset.from_dict({"text": ["a", "b", "c"], "label": [10, 2, 0]}).to_json(
            str(tmp_path / f"{split}.jsonl")
        )
    corpus = hf_datasets.load(data_config("hf", tmp_path))
    assert corpus.info.label_names == ("0", "2", "10")
    assert [e.label for e in corpus.split("test")] == [2, 1, 0]


def test_the_same_corpus_as_the_csv_loader(demo_corpus, tmp_path):
    """The demo's CSV files saved as a DatasetDict load to exactly the same examples."""
    config = data_config("csv", demo_corpus)
    from_csv = generic.load(config)
    splits = {
        split: Dataset.from_csv(str(demo_corpus / f"{split}.csv"), cache_dir=str(tmp_path / "c"))
        for split in ("train", "dev", "test")
    }
    DatasetDict(splits).save_to_disk(str(tmp_path / "demo"))
    from_hf = hf_datasets.load(data_config("hf", tmp_path / "demo"))
    assert from_hf.info.label_names == from_csv.info.label_names
    assert from_hf.splits == from_csv.splits


def test_registered_with_speaker_folds(tmp_path):
    folder = emotion_folder(tmp_path, train=[0, 1, 2, 1, 0, 2], dev=[2, 0], test=[1, 1])
    overrides = [f"data.path={folder}", "data.text_column=utterance", "data.label_column=emotion"]
    config = load_config(overrides=["data.dataset=hf", *overrides])
    assert len(load_corpus(config.data).split("train")) == 6
    folds = ["data.fold=0", "data.num_folds=2"]
    fold = load_corpus(load_config(overrides=["data.dataset=hf", *folds, *overrides]).data)
    assert {e.speaker for e in fold.split("test")} == {"Ann", "Cid"}  # sorted, dealt in turn


def test_missing_split_column_and_files(tmp_path):
    folder = emotion_folder(tmp_path, train=[0], validation=[1])
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", folder, **columns()))
    assert str(error.value) == f"{folder}: no test split (named test); found train, validation"
    folder = emotion_folder(tmp_path / "b", train=[0], dev=[1], test=[2])
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", folder, label_column="emotion"))
    assert str(error.value) == (
        f"{folder / 'train'}: missing column 'text' "
        "(columns: dialogue_id, emotion, speaker, turn, uid, utterance)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.parquet").write_text("not parquet")
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", empty))
    assert str(error.value) == (
        f"{empty}: expected dev.{{parquet,arrow,jsonl}} or validation.{{parquet,arrow,jsonl}} "
        f"or valid.{{parquet,arrow,jsonl}}; found train.parquet"
    )
    for split in ("dev", "test"):
        Dataset.from_dict({"text": ["a"], "label": ["b"]}).to_parquet(
            str(empty / f"{split}.parquet")
        )
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", empty))
    assert str(error.value).startswith(f"{empty / 'train.parquet'}: not a readable parquet file (")


def test_wrong_column_types_and_unlabelled_rows(tmp_path):
    def save(name: str, rows: dict, features: Features | None = None):
        folder = tmp_path / name
        split = Dataset.from_dict(rows, features=features)
        DatasetDict(train=split, dev=split, test=split).save_to_disk(str(folder))
        return folder

    folder = save("float", {"text": ["a"], "label": [0.5]})
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", folder))
    assert str(error.value) == (
        f"{folder / 'train'}: label column 'label' holds float64; "
        "expected strings, integers or a ClassLabel"
    )
    folder = save("int_text", {"text": [3], "label": ["a"]})
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", folder))
    assert (
        str(error.value) == f"{folder / 'train'}: text column 'text' holds int64; expected strings"
    )
    # GLUE-style test splits mark "no label" with -1 in a ClassLabel column.
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    folder = save("unlabelled", {"text": ["x", "y"], "label": [0, -1]}, features)
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", folder))
    assert str(error.value) == (
        f"{folder / 'train'}[1]: no label (every example needs one to train or score)"
    )
    folder = save("empty_text", {"text": ["x", " "], "label": ["a", "b"]})
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", folder))
    assert str(error.value) == f"{folder / 'train'}[1]: empty text"


GOOD_ROWS = [{"text": "fine", "label": "positive"}, {"text": "bad", "label": "negative"}]


@pytest.mark.parametrize(
    ("train_rows", "problem"),
    [
        ([{"text": "meh", "label": ""}], "[1]: empty label"),
        ([{"text": "meh", "label": "   "}], "[1]: empty label"),
        (
            [{"text": "ok", "label": "Positive"}],
            "[1]: label 'Positive' differs from 'positive' ({where}[0]) only in case; "
            "use one spelling",
        ),
    ],
    ids=["empty", "spaces", "case-twins"],
)
def test_labels_pass_the_csv_loaders_checks(tmp_path, train_rows, problem):
    """An empty label is not a class '', and case twins are not two classes (data/columns.py)."""
    for split, rows in {
        "train": GOOD_ROWS[:1] + train_rows,
        "dev": GOOD_ROWS,
        "test": GOOD_ROWS,
    }.items():
        Dataset.from_list(rows).to_parquet(str(tmp_path / f"{split}.parquet"))
    where = tmp_path / "train.parquet"
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", tmp_path))
    assert str(error.value) == f"{where}{problem.format(where=where)}"


@pytest.mark.parametrize(
    ("turns", "problem"),
    [(["1", "x"], "[1]: turn 'x'"), ([1.7, 2.0], "[0]: turn 1.7"), ([3, -5], "[1]: turn -5")],
    ids=["text", "float", "negative"],
)
def test_a_turn_is_a_whole_number_at_least_zero(tmp_path, turns, problem):
    """Not a traceback (int("x")), not truncated (1.7 -> 1), not a negative position."""
    for split, split_turns in {"train": turns, "dev": [0, 2], "test": [0, 1]}.items():
        rows = [{**row, "turn": turn} for row, turn in zip(GOOD_ROWS, split_turns, strict=True)]
        Dataset.from_list(rows).to_parquet(str(tmp_path / f"{split}.parquet"))
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", tmp_path))
    where = tmp_path / "train.parquet"
    assert str(error.value) == f"{where}{problem} is not a whole number >= 0"
    Dataset.from_list(GOOD_ROWS).add_column("turn", ["4", "0"]).to_parquet(str(where))
    corpus = hf_datasets.load(data_config("hf", tmp_path))  # digits as text are fine
    assert [e.turn for e in corpus.split("train")] == [4, 0]
    assert [e.turn for e in corpus.split("dev")] == [0, 2]


def test_classlabel_names_pass_the_same_checks(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["joy", "Joy"])})
    split = Dataset.from_dict({"text": ["x", "y"], "label": [0, 1]}, features=features)
    DatasetDict(train=split, dev=split, test=split).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", tmp_path / "saved"))
    where = f"{tmp_path / 'saved' / 'train'}: ClassLabel 'label' name"
    assert str(error.value) == (
        f"{where} 1: label 'Joy' differs from 'joy' ({where} 0) only in case; use one spelling"
    )


def test_one_saved_dataset_and_two_formats_are_refused(tmp_path):
    single = tmp_path / "single"
    Dataset.from_dict({"text": ["a"], "label": ["b"]}).save_to_disk(str(single))
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", single))
    assert str(error.value) == (
        f"{single}: one saved Dataset, not a DatasetDict; "
        "save a DatasetDict with train, dev (or validation) and test splits"
    )
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    split = Dataset.from_dict({"text": ["a"], "label": ["b"]})
    split.to_parquet(str(mixed / "train.parquet"))
    split.to_json(str(mixed / "train.jsonl"))
    with pytest.raises(DataError) as error:
        hf_datasets.load(data_config("hf", mixed))
    assert str(error.value) == (
        f"{mixed}: split 'train' is in several formats (train.parquet, train.jsonl); keep one"
    )


def test_datasets_is_imported_only_when_a_corpus_is_loaded():
    """Reading the registry (every config check does) must not pay for importing `datasets`."""
    import subprocess
    import sys

    code = "import sys, emoscale.data.registry; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_input_through_the_entry_point_is_one_line_and_no_run_folder(
    run_overrides, tmp_path, capsys
):
    folder = emotion_folder(tmp_path, train=[0, 1], dev=[1], test=[2])
    shutil.rmtree(folder / "test")  # a DatasetDict whose test split was deleted by hand
    overrides = [o for o in run_overrides if not o.startswith(("data.", "output_dir"))]
    overrides += ["data.dataset=hf", f"data.path={folder}", f"output_dir={tmp_path / 'run'}"]
    assert train.main(overrides + ["data.text_column=utterance"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: {folder}: not a readable save_to_disk folder (No such files: ")
    assert not (tmp_path / "run").exists()
