"""`emoscale predict RUN --input FILE --output OUT.jsonl`: the same answers as `predict`, in input
order, on one or two processes, and a killed run goes on without redoing its written chunks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from launching import REPO, TWO_CPU_PROCESSES

from emoscale import cli
from emoscale.inference.predict import predict
from emoscale.inference.predict_stream import predict_file
from emoscale.tiny import demo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def finished_run(tiny_llama, demo_corpus, tmp_path_factory):
    from emoscale import train
    from emoscale.config import load_config

    out = tmp_path_factory.mktemp("stream_run") / "run"
    overrides = demo.overrides(demo_corpus, tiny_llama) + ["train.max_steps=2", f"output_dir={out}"]
    return train.run(load_config(overrides=overrides))[0]


@pytest.fixture(scope="module")
def input_file(tmp_path_factory):
    """300 sentences with a blank line now and then (blank lines get no output)."""
    path = tmp_path_factory.mktemp("stream_input") / "sentences.txt"
    lines = []
    for index, (text, _) in enumerate(demo.sentences(300, seed=7)):
        lines += [text] + ([""] if index % 97 == 5 else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_streamed_predictions_equal_predict_in_input_order(finished_run, input_file, tmp_path):
    out = tmp_path / "out.jsonl"
    counts = predict_file(finished_run, input_file, out, chunk_lines=64)
    assert counts == {
        "chunks_done": 5,
        "chunks_kept": 0,
        "lines": 300,
        "chunks": 5,
        "skipped_audio": 0,
    }
    rows = read_rows(out)
    expected = predict(finished_run, input_file.read_text().splitlines())
    assert [row["text"] for row in rows] == [row["text"] for row in expected]
    assert [row["label"] for row in rows] == [row["label"] for row in expected]
    for row, other in zip(rows, expected, strict=True):
        assert row["scores"] == pytest.approx(other["scores"], abs=1e-5)
    numbers = [row["line"] for row in rows]
    lines = input_file.read_text().splitlines()
    assert all(lines[number - 1] == row["text"] for number, row in zip(numbers, rows, strict=True))
    assert not out.with_name("out.jsonl.parts").exists()


def test_a_killed_prediction_goes_on_without_redoing_written_chunks(
    finished_run, input_file, tmp_path
):
    out = tmp_path / "out.jsonl"
    parts = tmp_path / "out.jsonl.parts"
    code = (
        "from emoscale.inference.predict_stream import predict_file; "
        f"predict_file({str(finished_run)!r}, {str(input_file)!r}, {str(out)!r}, chunk_lines=16)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + 300
    while len(list(parts.glob("chunk-*.jsonl"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = {path.name: path.stat().st_mtime_ns for path in parts.glob("chunk-*.jsonl")}
    assert 3 <= len(written) < 19 and not out.exists()
    counts = predict_file(finished_run, input_file, out, chunk_lines=16)
    assert counts["chunks_kept"] == len(written)
    assert counts["chunks_done"] == 19 - len(written)
    whole = tmp_path / "whole.jsonl"
    predict_file(finished_run, input_file, whole, chunk_lines=16)
    assert out.read_text() == whole.read_text()


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_share_the_file_and_write_it_in_order(finished_run, input_file, tmp_path):
    single = tmp_path / "single.jsonl"
    predict_file(finished_run, input_file, single, chunk_lines=64)
    out = tmp_path / "two.jsonl"
    command = [sys.executable, "-m", "accelerate.commands.launch", *TWO_CPU_PROCESSES]
    command += ["-m", "emoscale.cli", "predict", str(finished_run), "--input", str(input_file)]
    done = subprocess.run(
        [*command, "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "EMOSCALE_CHUNK_LINES": "64"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0: 3 chunks labelled" in done.stderr and "rank 1: 2 chunks labelled" in done.stderr
    assert out.read_text() == single.read_text()  # chunk by chunk the same batches, one thread


def test_bad_input_is_one_line(finished_run, input_file, tmp_path, capsys):
    assert cli.main(["predict", str(finished_run), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert (
        capsys.readouterr().err
        == "error: --output needs --input FILE (stdin cannot be shared out)\n"
    )
    parts = tmp_path / "o.jsonl.parts"
    parts.mkdir()
    (parts / "job.json").write_text(json.dumps({"run": "elsewhere"}))
    argv = [
        "predict",
        str(finished_run),
        "--input",
        str(input_file),
        "--output",
        str(tmp_path / "o.jsonl"),
    ]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: {parts} holds a partial prediction of another run, input or overrides; "
        "remove it or choose another --output\n"
    )


def test_a_parts_folder_emoscale_did_not_make_is_never_used(
    finished_run, input_file, tmp_path, capsys
):
    """`<OUT>.parts` is joined and removed at the end: a user's folder of that name stays whole."""
    parts = tmp_path / "o.jsonl.parts"
    parts.mkdir()
    (parts / "notes.txt").write_text("mine\n")
    argv = ["predict", str(finished_run), "--input", str(input_file)]
    assert cli.main([*argv, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert capsys.readouterr().err == (
        f"error: {parts} exists and is not emoscale's; remove it or choose another --output\n"
    )
    assert [path.name for path in parts.iterdir()] == ["notes.txt"]
    assert (parts / "notes.txt").read_text() == "mine\n"
    assert not (tmp_path / "o.jsonl").exists()


def test_join_removes_only_the_names_the_job_writes(tmp_path):
    from emoscale.inference.predict_stream import join

    parts = tmp_path / "out.jsonl.parts"
    parts.mkdir()
    for number, line in enumerate(['{"line": 1}\n', '{"line": 2}\n']):
        (parts / f"chunk-{number:08d}.jsonl").write_text(line)
    (parts / "job.json").write_text("{}")
    (parts / ".chunk-00000002.jsonl.1.tmp").write_text("half")  # a killed rank's write
    (parts / "notes.txt").write_text("a user's")
    join(parts, tmp_path / "out.jsonl", count=2)
    assert (tmp_path / "out.jsonl").read_text() == '{"line": 1}\n{"line": 2}\n'
    assert sorted(path.name for path in parts.iterdir()) == ["notes.txt"]  # kept, and its folder
    (parts / "notes.txt").unlink()
    (parts / "chunk-00000000.jsonl").write_text('{"line": 1}\n')
    join(parts, tmp_path / "again.jsonl", count=1)
    assert not parts.exists()  # nothing else in it: the folder goes too


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    """Windows editors start UTF-8 files with a BOM; predict without --output drops it too."""
    from emoscale.inference.predict_stream import chunks

    path = tmp_path / "bom.txt"
    path.write_bytes("\ufefffirst line\nsecond\n".encode())
    assert list(chunks(path, 8)) == [(0, [(1, "first line"), (2, "second")])]
