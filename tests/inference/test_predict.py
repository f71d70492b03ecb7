"""`emoscale predict` and `emoscale eval` load a finished run's trained tensors (safetensors only)
and give exactly the run's own predictions and metrics: from a file, from stdin in a real
process, on another corpus, and for the speech + text family."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from launching import REPO, launch_two_processes, succeeded

from emoscale import cli, train
from emoscale.config import load_config
from emoscale.errors import DataError
from emoscale.inference import predict
from emoscale.inference.predict_stream import predict_file
from emoscale.tiny import demo

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZES = {"train": 64, "dev": 16, "test": 16}


def saved_test_predictions(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return [row for row in rows if row["split"] == "test"]


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory) -> dict[str, Path]:
    """Two finished runs on a small demo corpus: LoRA and P-Tuning v2 (an adapter of each kind).
    The LoRA run weighs its loss by class (train.class_weights): eval and predict rebuild its
    family from its config without a train split, and must not need one."""
    corpus = demo.write_corpus(tmp_path_factory.mktemp("predict_corpus"), SIZES)
    folders = {}
    for method, extra in (
        ("lora", ["train.class_weights=balanced"]),
        ("ptuning_v2", ["ptuning.num_virtual_tokens=8", "train.lr=3e-2"]),
    ):
        output = tmp_path_factory.mktemp(f"predict_{method}") / "run"
        overrides = demo.overrides(corpus, tiny_llama) + [f"model.method={method}", *extra]
        overrides += ["train.max_steps=6", f"output_dir={output}"]
        folders[method], _ = train.run(load_config(overrides=overrides))
    return folders


@pytest.mark.parametrize("method", ["lora", "ptuning_v2"])
def test_predict_from_a_file_gives_the_runs_own_predictions(method, runs, tmp_path, capsys):
    expected = saved_test_predictions(runs[method])
    inputs = tmp_path / "texts.txt"
    inputs.write_text(
        "\n".join(row["text"] for row in expected) + "\n\n"
    )  # a blank line is skipped
    assert cli.main(["predict", str(runs[method]), "--input", str(inputs), "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in results] == [row["text"] for row in expected]
    assert [r["label"] for r in results] == [row["pred"] for row in expected]
    for result, row in zip(results, expected, strict=True):
        assert result["scores"] == pytest.approx(row["scores"], abs=1e-4)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0)
        assert max(result["probabilities"], key=result["probabilities"].get) == result["label"]


def test_predict_needs_no_corpus(runs, tmp_path, capsys):
    """The run keeps its labels, label words and template (corpus.json): a corpus that moved away
    does not stop prediction."""
    expected = saved_test_predictions(runs["lora"])[:3]
    inputs = tmp_path / "texts.txt"
    inputs.write_text("".join(row["text"] + "\n" for row in expected))
    moved = f"data.path={tmp_path / 'moved'}"
    arguments = ["predict", str(runs["lora"]), "--input", str(inputs), "--json", moved]
    assert cli.main(arguments) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in results] == [row["pred"] for row in expected]
    saved = json.loads((runs["lora"] / "corpus.json").read_text())
    assert saved["label_names"] == list(results[0]["scores"])


@pytest.mark.slow
def test_predict_reads_stdin_in_a_real_process(runs):
    expected = saved_test_predictions(runs["lora"])[:4]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [sys.executable, "-m", "emoscale", "predict", str(runs["lora"])],
        input="".join(row["text"] + "\n" for row in expected),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    for line, row in zip(lines, expected, strict=True):
        label, probabilities, text = line.split("\t")
        assert (label, text) == (row["pred"], row["text"])
        assert probabilities.split()[0].startswith(f"{list(row['scores'])[0]}=0.")


def test_eval_reproduces_the_runs_test_metrics_and_writes_a_folder(runs, tmp_path, capsys):
    run = runs["lora"]
    assert cli.main(["eval", str(run), "--out", str(tmp_path / "eval")]) == 0
    shown = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("accuracy", "macro_f1", "weighted_f1", "ua", "wa", "num_examples"):
        assert shown[key] == pytest.approx(saved[key]), key
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    assert written["confusion_matrix"] == saved["confusion_matrix"]
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 0
    assert len((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()) == 16
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["run"] == str(run)


def test_eval_on_another_corpus_and_split(runs, tmp_path, capsys):
    other = demo.write_corpus(tmp_path / "other", {"train": 8, "dev": 12, "test": 20}, seed=7)
    assert cli.main(["eval", str(runs["ptuning_v2"]), f"data.path={other}", "--split", "dev"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["split"], shown["num_examples"]) == ("dev", 12)


def test_eval_refuses_to_change_the_model(runs, capsys):
    assert cli.main(["eval", str(runs["lora"]), "model.method=none"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: override 'model.method=none': only data.* and eval.* keys can change; "
        "the model is the run's"
    )


def test_a_run_that_needs_remote_code_is_refused(runs, tmp_path, capsys):
    copy = tmp_path / "run"
    copy.mkdir()
    config = yaml.safe_load((runs["lora"] / "config.yaml").read_text())
    config["model"]["trust_remote_code"] = True
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    (copy / "metrics.json").write_text((runs["lora"] / "metrics.json").read_text())
    assert cli.main(["predict", str(copy), "--input", str(copy / "config.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {copy} was trained with model.trust_remote_code=true; "
        "predict and eval never run code from a model folder"
    )


@pytest.mark.slow
def test_fusion_run_predicts_audio_and_transcript_pairs(fusion_overrides, tone_corpus, tmp_path):
    # class-weighted, as the LoRA run of `runs`: predict needs no train split for the weights
    overrides = fusion_overrides + ["train.max_steps=2", "train.class_weights=balanced"]
    run_dir, _ = train.run(load_config(overrides=overrides))
    with open(tone_corpus / "test.csv") as handle:
        rows = list(csv.DictReader(handle))[:6]
    lines = [f"{tone_corpus / row['audio_path']}\t{row['text']}" for row in rows]
    results = predict.predict(run_dir, lines)
    expected = saved_test_predictions(run_dir)[:6]  # in the order of test.csv
    for result, row, saved in zip(results, rows, expected, strict=True):
        assert (result["audio_path"], result["text"]) == (
            str(tone_corpus / row["audio_path"]),
            saved["text"],
        )
        assert result["label"] == saved["pred"]
        assert result["scores"] == pytest.approx(saved["scores"], abs=1e-4)

    # The streaming path (--output) gives the same answers. A clip it cannot read is one line
    # naming it before the model runs on its chunk; with data.skip_bad_audio its line gets no row.
    not_audio = tmp_path / "not-audio.wav"
    not_audio.write_text("hello")
    source = tmp_path / "clips.tsv"
    source.write_text("\n".join([*lines[:3], f"{not_audio}\tsome words", *lines[3:]]) + "\n")
    with pytest.raises(DataError) as refused:
        predict_file(run_dir, source, tmp_path / "refused.jsonl")
    assert str(refused.value) == f"{not_audio}: not a readable audio file (format not recognised)"
    assert not list((tmp_path / "refused.jsonl.parts").glob("chunk-*"))  # nothing labelled
    output = tmp_path / "out.jsonl"
    counts = predict_file(run_dir, source, output, ["data.skip_bad_audio=true"], chunk_lines=2)
    assert counts["skipped_audio"] == 1
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3, 5, 6, 7]
    for row, result in zip(rows, results, strict=True):
        assert (row["audio_path"], row["label"]) == (result["audio_path"], result["label"])
        assert row["scores"] == pytest.approx(result["scores"], abs=1e-5)

    # A malformed line in a later chunk is named by its line in the file, not in the chunk.
    source.write_text("\n".join([*lines[:3], "", "no-tab-here.wav"]) + "\n")
    with pytest.raises(DataError) as refused:
        predict_file(run_dir, source, tmp_path / "malformed.jsonl", chunk_lines=2)
    assert str(refused.value) == f"{source}:5: expected audio_path<TAB>transcript"

    # Ranks in a process group (several GPUs) that label different numbers of chunks: 5 chunks
    # on 2 ranks. The text-feature cache's barrier used to hang the rank with the extra chunk.
    source.write_text("\n".join(lines[:5]) + "\n")
    grouped = tmp_path / "grouped.jsonl"
    done = launch_two_processes(
        ["predict", str(run_dir), "--input", str(source), "--output", str(grouped)],
        script=REPO / "tests/scripts/predict_in_process_group.py",
        env={"EMOSCALE_CHUNK_LINES": "1"},
        timeout=300,
    )
    assert succeeded(done)
    rows = [json.loads(line) for line in grouped.read_text().splitlines()]
    assert [(row["line"], row["label"]) for row in rows] == [
        (number, result["label"]) for number, result in enumerate(results[:5], start=1)
    ]


def test_adapter_on_a_changed_base_model_is_refused(run_overrides, tmp_path, capsys):
    """The run's model.path now holds other weights: predict and export stop with one line."""
    import shutil

    from emoscale.config import load_config
    from emoscale.tiny import demo
    from emoscale.tiny.lm import make_tiny

    base = tmp_path / "base"
    texts = [text for text, _ in demo.sentences(300, seed=99)]
    make_tiny(base, texts, vocab_size=400, seed=0)
    run_dir, _ = train.run(
        load_config(overrides=run_overrides + [f"model.path={base}", "train.max_steps=2"])
    )
    shutil.rmtree(base)
    make_tiny(base, texts, vocab_size=400, seed=1)  # same shapes, other weights
    (tmp_path / "texts.txt").write_text("the movie was lovely.\n")
    assert cli.main(["predict", str(run_dir), "--input", str(tmp_path / "texts.txt")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"error: model folder {base} is not the base model of run {run_dir} "
        f"(its weights differ; the run was trained on {base})"
    )
    assert cli.main(["export", str(run_dir), "--out", str(tmp_path / "merged")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == line


def test_predict_refuses_overrides_that_change_the_labels(runs, tmp_path, capsys):
    inputs = tmp_path / "texts.txt"
    inputs.write_text("a fine film\n")
    arguments = ["predict", str(runs["lora"]), "--input", str(inputs), "data.labels=[neg,pos]"]
    assert cli.main(arguments) == 2
    assert capsys.readouterr().err.strip() == (
        "error: override 'data.labels=[neg,pos]': predict answers with the run's own labels; "
        "to score another corpus use emoscale eval"
    )
