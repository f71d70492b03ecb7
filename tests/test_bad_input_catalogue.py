"""The bad-input catalogue (issue 6): every case stops with one exact line and exit code 2 before
any model loads, leaving no run folder; or is handled and counted, never silently. Cases already in
test_bad_input.py (missing model folder, label outside the set, whitespace-only text, missing
column, unknown dataset, a folder holding another run), test_config.py (config messages) and
tests/data/test_audio.py (each bad audio file's message, stereo, resampling) are not repeated."""

from __future__ import annotations

import csv
import json
import resource
import shutil

import pytest
import soundfile
import torch
from launching import launch_two_processes
from safetensors.torch import load_file, save_file
from training_process import TrainingProcess, latest_step
from transformers import AutoTokenizer

from emoscale import train
from emoscale.config import load_config, save_config
from emoscale.errors import EmoscaleError
from emoscale.models import base_model
from emoscale.tiny import demo
from emoscale.tiny.lm import make_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fails_with(capsys, tmp_path, overrides, run_dir_exists: bool = False) -> str:
    code = train.main(overrides + [f"output_dir={tmp_path / 'run'}"])
    assert code == 2
    assert (tmp_path / "run").exists() == run_dir_exists  # nothing half-written
    return capsys.readouterr().err.strip().splitlines()[-1]


def write_corpus(folder, splits: dict[str, list[list[str]]], header=("text", "label")):
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([list(header), *rows])
    return folder


def demo_rows(count: int, seed: int) -> list[list[str]]:
    return [list(row) for row in demo.sentences(count, seed)]


def id_rows(count: int, seed: int, split: str) -> list[list[str]]:
    return [[f"{split}-{i}", text, label] for i, (text, label) in enumerate(demo_rows(count, seed))]


# --- config, through the entry point: exit code 2 and the line on stderr ------------------------


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("train.lrr=1", "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
        (
            "train.lr=fast",
            "config key 'train.lr': Input should be a valid number, "
            "unable to parse string as a number (got 'fast')",
        ),
        (
            "train.batch_size=0",
            "config key 'train.batch_size': Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "data.max_length=4",
            "config key 'data.max_length': Input should be greater than or equal to 8 (got 4)",
        ),
    ],
)
def test_config_errors_exit_2_with_one_line(capsys, tmp_path, run_overrides, override, line):
    assert fails_with(capsys, tmp_path, run_overrides + [override]) == f"error: {line}"


# --- data ---------------------------------------------------------------------------------------


def test_empty_text(capsys, tmp_path, run_overrides, demo_corpus):
    rows = {"train": demo_rows(20, 1), "dev": demo_rows(5, 2), "test": [["", "neutral"]]}
    folder = write_corpus(tmp_path / "corpus", rows)
    line = fails_with(capsys, tmp_path, run_overrides + [f"data.path={folder}"])
    assert line == f"error: {folder / 'test.csv'}:2: empty text"


def test_duplicate_example_ids(capsys, tmp_path, run_overrides):
    test = id_rows(3, 3, "test") + [["test-1", "It was fine.", "positive"]]
    rows = {"train": id_rows(20, 1, "train"), "dev": id_rows(5, 2, "dev"), "test": test}
    folder = write_corpus(tmp_path / "corpus", rows, ("id", "text", "label"))
    line = fails_with(
        capsys, tmp_path, run_overrides + [f"data.path={folder}", "data.id_column=id"]
    )
    assert line == f"error: {folder / 'test.csv'}: duplicate example id 'test-1'"


def test_long_texts_are_truncated_printed_and_counted(capsys, tmp_path, run_overrides):
    long = [" ".join(["the movie was really quite wonderful"] * 20), "positive"]
    rows = {"train": demo_rows(40, 1) + [long], "dev": demo_rows(10, 2), "test": [long] * 3}
    folder = write_corpus(tmp_path / "corpus", rows)
    overrides = run_overrides + [f"data.path={folder}", "data.max_length=64", "train.max_steps=2"]
    assert train.main(overrides) == 0
    assert "data.max_length=64: truncated 4 texts (test: 3, train: 1)" in capsys.readouterr().out
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["data"]["truncated"] == {"train": 1, "test": 3}


# --- model folder -------------------------------------------------------------------------------


def test_a_tokenizer_without_a_pad_token_is_handled(tmp_path, run_overrides, tiny_llama):
    model = shutil.copytree(tiny_llama, tmp_path / "no_pad")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model)
    assert AutoTokenizer.from_pretrained(model).pad_token is None
    assert train.main(run_overrides + [f"model.path={model}", "train.max_steps=2"]) == 0
    assert (tmp_path / "run/metrics.json").is_file()  # padded with EOS (masked out)


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    """A second tiny Llama: the same tokenizer and shapes, different weights."""
    texts = demo.tokenizer_texts()  # as conftest's tiny_llama
    folder = tmp_path_factory.mktemp("other_base")
    return make_tiny(folder, texts, arch="llama", vocab_size=600, seed=1)


def test_a_run_refuses_a_base_model_it_was_not_trained_on(tmp_path, tiny_llama, other_base):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = {
        "base_model": {"path": str(tiny_llama), "fingerprint": base_model.fingerprint(tiny_llama)}
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    base_model.check(run_dir, tiny_llama)  # its own base: fine
    with pytest.raises(EmoscaleError) as caught:
        base_model.check(run_dir, other_base)
    assert str(caught.value) == (
        f"model folder {other_base} is not the base model of run {run_dir} "
        f"(its weights differ; the run was trained on {tiny_llama})"
    )
    wider = make_tiny(tmp_path / "wider", ["a b c"] * 10, vocab_size=300, hidden_size=32)
    with pytest.raises(EmoscaleError, match=r"\(hidden_size 32, the run's base has 64;"):
        base_model.check(run_dir, wider)


# --- resume -------------------------------------------------------------------------------------


def test_resume_without_a_run(capsys, tmp_path, run_overrides):
    line = fails_with(capsys, tmp_path, run_overrides + ["--resume"])
    assert line == f"error: --resume: {tmp_path / 'run'} holds no run to resume"


def test_resume_with_another_config_or_base_model(capsys, tmp_path, run_overrides, other_base):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-00000001").mkdir(parents=True)  # a run with a checkpoint:
    (run_dir / ".emoscale-run").write_text("")  # (the mark of a folder emoscale made)
    (run_dir / "checkpoints" / "latest").write_text("step-00000001")  # one without starts afresh
    save_config(load_config(overrides=run_overrides), run_dir / "config.yaml")
    line = fails_with(capsys, tmp_path, run_overrides + ["train.lr=1e-3", "--resume"], True)
    assert line == (
        "error: --resume: config key 'train.lr' is 0.001 but the run used 0.003; "
        f"resume with --config {run_dir / 'config.yaml'} (only data.audio_cache_mb, "
        "train.keep_checkpoints, train.log_every_steps, train.num_workers, "
        "train.save_every_steps may change)"
    )
    tiny_llama = load_config(overrides=run_overrides).model.path
    record = {"base_model": {"path": tiny_llama, "fingerprint": base_model.fingerprint(tiny_llama)}}
    (run_dir / "run.json").write_text(json.dumps(record))
    save_config(
        load_config(overrides=run_overrides + [f"model.path={other_base}"]), run_dir / "config.yaml"
    )
    line = fails_with(
        capsys, tmp_path, run_overrides + [f"model.path={other_base}", "--resume"], True
    )
    assert line == (
        f"error: model folder {other_base} is not the base model of run {run_dir} "
        f"(its weights differ; the run was trained on {tiny_llama})"
    )


def test_resume_with_a_damaged_run_json(capsys, tmp_path, run_overrides):
    """--resume reads run.json for the base model's fingerprint: strictly, one line naming it."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-00000001").mkdir(parents=True)
    (run_dir / ".emoscale-run").write_text("")
    (run_dir / "checkpoints" / "latest").write_text("step-00000001")
    save_config(load_config(overrides=run_overrides), run_dir / "config.yaml")
    (run_dir / "run.json").write_text('{"base_model": ')
    line = fails_with(capsys, tmp_path, run_overrides + ["--resume"], True)
    assert line == f"error: {run_dir / 'run.json'}:1: not valid JSON (Expecting value)"
    (run_dir / "run.json").write_text("[]")
    line = fails_with(capsys, tmp_path, run_overrides + ["--resume"], True)
    assert line == f"error: {run_dir / 'run.json'}: expected a JSON object (the run's record)"


# --- training -----------------------------------------------------------------------------------


@pytest.fixture
def nan_model(tiny_llama, tmp_path):
    """The tiny Llama with nan embeddings for the bytes of '€': a text with it has a nan loss."""
    folder = shutil.copytree(tiny_llama, tmp_path / "nan_model")
    tensors = load_file(str(folder / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for token in tokenizer("€", add_special_tokens=False)["input_ids"]:
        tensors["model.embed_tokens.weight"][token] = torch.nan
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def nan_corpus(folder, good_train: int):
    bad = ["costly", "The ticket cost 20 € and the film was awful.", "negative"]
    splits = {"train": id_rows(good_train, 1, "train") + [bad], "dev": id_rows(12, 2, "dev")}
    return write_corpus(folder, splits | {"test": id_rows(12, 3, "test")}, ("id", "text", "label"))


def test_a_nonfinite_loss_stops_naming_the_step_and_the_examples(
    capsys, tmp_path, run_overrides, nan_model
):
    # Two examples of two classes (a train split of one class is refused), one batch: step 1.
    folder = nan_corpus(tmp_path / "corpus", good_train=0)
    with open(folder / "train.csv", "a") as handle:
        handle.write("fine,A fine film.,positive\n")
    overrides = run_overrides + [
        f"model.path={nan_model}",
        f"data.path={folder}",
        "data.id_column=id",
    ]
    line = fails_with(capsys, tmp_path, overrides, run_dir_exists=True)
    assert line == (
        "error: non-finite loss (nan) at step 1 in the batch of examples ['costly', 'fine']; "
        "set train.skip_nonfinite=true to skip such batches"
    )


@pytest.mark.multiprocess
def test_an_error_during_training_is_reported_by_every_rank(tmp_path, run_overrides, nan_model):
    """Bad input is said once, by rank 0 (tests/training/test_multiprocess.py); an error during training
    may be one rank's own, so each rank says it, naming itself."""
    folder = nan_corpus(tmp_path / "corpus", good_train=3)
    overrides = [f"model.path={nan_model}", f"data.path={folder}", "data.id_column=id"]
    result = launch_two_processes([*run_overrides, *overrides, "train.batch_size=2"], timeout=300)
    assert result.returncode != 0
    # Each rank's line, wherever another rank's progress bar left the cursor.
    errors = sorted(
        line[line.index("error: ") :] for line in result.stderr.splitlines() if "error: " in line
    )
    assert [line[: len("error: [rank 0] ")] for line in errors] == [
        "error: [rank 0] ",
        "error: [rank 1] ",
    ], result.stderr[-2000:]
    assert all("non-finite loss (nan) at step 1" in line and "'costly'" in line for line in errors)


def test_skip_nonfinite_skips_and_counts_the_batches(tmp_path, run_overrides, nan_model):
    folder = nan_corpus(tmp_path / "corpus", good_train=8)  # 3 batches of 3, one holds '€'
    overrides = run_overrides + [
        f"model.path={nan_model}",
        f"data.path={folder}",
        "data.id_column=id",
    ]
    overrides += ["train.skip_nonfinite=true", "train.batch_size=3", "train.epochs=2"]
    assert train.main(overrides) == 0
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["skipped_nonfinite_batches"] == 2  # one per epoch
    history = (tmp_path / "run/history.jsonl").read_text()
    assert "NaN" not in history and "Infinity" not in history


def test_a_full_disk_while_saving_stops_with_one_line_and_keeps_the_last_checkpoint(
    run_overrides, tmp_path
):
    # The child's file-size limit drops below a checkpoint's size while it trains: every later
    # write of a bigger file fails with EFBIG, as on a full disk (Python ignores SIGXFSZ).
    run_dir = tmp_path / "run"
    overrides = run_overrides + ["lora.r=32", "train.save_every_steps=1", "train.max_steps=60"]
    child = TrainingProcess(overrides, tmp_path / "logs")
    child.wait_until(lambda: latest_step(run_dir) >= 3)
    resource.prlimit(child.process.pid, resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
    assert child.wait() == 2
    intact = latest_step(run_dir)
    assert child.stderr.read_text().strip().splitlines()[-1] == (
        f"error: saving checkpoint {run_dir}/checkpoints/step-{intact + 1:08d} failed "
        f"(File too large); the latest checkpoint, step-{intact:08d}, is intact"
    )
    assert not list((run_dir / "checkpoints").glob(".*"))  # no half-written folder left
    folder = run_dir / f"checkpoints/step-{intact:08d}"
    assert json.loads((folder / "progress.json").read_text())["step"] == intact
    assert torch.load(folder / "optimizer.bin", weights_only=True)["state"]


# --- audio (the fusion family) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (lambda path: path.write_bytes(b""), "audio file is empty (no samples)"),
        (
            lambda path: soundfile.write(path, torch.zeros(0).numpy(), 16_000),
            "audio file is empty (no samples)",
        ),
        (
            lambda path: path.write_bytes(b"not audio at all" * 8),
            "not a readable audio file (format not recognised)",
        ),
    ],
    ids=["zero_bytes", "no_samples", "corrupt"],
)
def test_bad_audio_through_the_entry_point(
    capsys, tmp_path, fusion_overrides, tone_corpus, write, problem
):
    corpus = shutil.copytree(tone_corpus, tmp_path / "corpus")
    write(corpus / "wav/dev-0002.wav")
    line = fails_with(capsys, tmp_path, fusion_overrides + [f"data.path={corpus}"])
    assert line == f"error: {corpus}/wav/dev-0002.wav: {problem}"
