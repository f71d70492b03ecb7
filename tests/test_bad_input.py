"""Bad input stops with one line and exit code 2 before the model loads, and writes no run folder."""

from __future__ import annotations

import csv

import pytest

from emoscale import train


def write_split(folder, split, rows, header=("text", "label")):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{split}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def fails_with(capsys, tmp_path, overrides) -> str:
    code = train.main(overrides + [f"output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert not (tmp_path / "run").exists()  # nothing half-written
    return err[-1]


@pytest.fixture
def corpus_with(tmp_path, demo_corpus):
    def make(bad_rows, header=("text", "label")):
        folder = tmp_path / "corpus"
        for split in ("train", "dev"):
            with open(demo_corpus / f"{split}.csv") as handle:
                write_split(folder, split, list(csv.reader(handle))[1:], header=("text", "label"))
        write_split(folder, "test", bad_rows, header)
        return folder

    return make


def test_missing_model_folder(capsys, tmp_path, run_overrides):
    line = fails_with(capsys, tmp_path, run_overrides + [f"model.path={tmp_path / 'nowhere'}"])
    assert (
        line
        == f"error: config key 'model.path': model folder {tmp_path / 'nowhere'} does not exist"
    )


def test_label_outside_the_label_set_names_file_line_and_value(
    capsys, tmp_path, run_overrides, corpus_with
):
    folder = corpus_with([["fine film", "positive"], ["odd film", "mixed"]])
    line = fails_with(capsys, tmp_path, run_overrides + [f"data.path={folder}"])
    assert (
        line
        == f"error: {folder / 'test.csv'}:3: label 'mixed' is not one of ['positive', 'negative', 'neutral']"
    )


def test_empty_text(capsys, tmp_path, run_overrides, corpus_with):
    folder = corpus_with([["fine film", "positive"], ["   ", "neutral"]])
    line = fails_with(capsys, tmp_path, run_overrides + [f"data.path={folder}"])
    assert line == f"error: {folder / 'test.csv'}:3: empty text"


def test_missing_column(capsys, tmp_path, run_overrides, corpus_with):
    folder = corpus_with([["fine film", "positive"]], header=("sentence", "label"))
    line = fails_with(capsys, tmp_path, run_overrides + [f"data.path={folder}"])
    assert line == f"error: {folder / 'test.csv'}: missing column 'text' (columns: label, sentence)"


def test_unknown_dataset(capsys, tmp_path, run_overrides):
    line = fails_with(capsys, tmp_path, run_overrides + ["data.dataset=imdb"])
    assert line.startswith("error: config key 'data.dataset': unknown dataset 'imdb'; known: ")


def test_existing_run_folder_is_refused(capsys, tmp_path, run_overrides):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".emoscale-run").write_text("")  # the mark of a folder emoscale made
    (tmp_path / "run" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "run" / "metrics.json").write_text("{}")  # finished: not to be rerun silently
    code = train.main(run_overrides + [f"output_dir={tmp_path / 'run'}"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: output_dir {tmp_path / 'run'} already holds a run; "
        "pass --resume to continue it or --overwrite to replace it"
    )
