"""Parallel studies on this machine (`--launcher local --parallel N`): a failed point stops no
other, a second start keeps the finished points and reruns the failed one; and every launcher
option that cannot work is one `error:` line before anything runs."""

from __future__ import annotations

import json

import pytest
import torch

from emoscale import cli
from emoscale.studies import study_record
from emoscale.tiny import demo


@pytest.fixture
def study_base(tiny_llama, tmp_path):
    corpus = demo.write_corpus(tmp_path / "corpus", {"train": 32, "dev": 8, "test": 8})
    return demo.overrides(corpus, tiny_llama) + [
        "lora.target_modules=[q_proj,v_proj]",
        "train.max_steps=2",
        f"output_dir={tmp_path / 'study'}",
    ]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_failed_point_stops_no_other_and_a_rerun_redoes_only_it(
    study_base, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    good, later = tmp_path / "corpus", tmp_path / "later"
    later.mkdir()  # no CSVs yet: that point fails while loading its data
    argv = ["sweep", *study_base, "--grid", f"data.path={good},{later}"]
    argv += ["--launcher", "local", "--parallel", "2"]
    parent = tmp_path / "study"
    names = [
        f"data.path={str(good).replace('/', '-')}",
        f"data.path={str(later).replace('/', '-')}",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: 1 of 2 points failed ({names[1]}); their logs are in")
    assert (parent / names[0] / "metrics.json").is_file()
    assert not (parent / "sweep.json").exists()  # the summary waits for every point
    assert cli.main(["sweep", "--status", str(parent)]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1] == "done"
    assert lines[1].split()[1:3] == ["failed", "error:"] and "expected train.csv" in lines[1]
    assert lines[2] == "1 of 2 done, 1 failed"

    demo.write_corpus(later, {"train": 32, "dev": 8, "test": 8})
    finished = (parent / names[0] / "metrics.json").stat().st_mtime_ns
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{names[0]}: finished earlier, kept" in out and f"{names[1]}: done in" in out
    assert (parent / names[0] / "metrics.json").stat().st_mtime_ns == finished
    record = json.loads((parent / "sweep.json").read_text())
    assert [point["name"] for point in record["points"]] == names
    assert study_record.read_state(parent, names[1])["state"] == "done"


def test_launcher_options_that_cannot_work_are_one_line(study_base, tmp_path, capsys, monkeypatch):
    grid = ["--grid", "seed=1,2"]
    devices = torch.cuda.device_count()
    cases = [
        (["--launcher", "mpi"], "error: emoscale sweep: argument --launcher: invalid choice: 'mpi' "
         "(choose from 'local', 'slurm') (see emoscale sweep --help)"),
        (["--launcher", "local", "--parallel", "0"], "error: emoscale sweep: argument --parallel: "
         "expected a whole number of at least 1, got '0' (see emoscale sweep --help)"),
        (["--launcher", "local", "--devices", f"{devices}"],
         f"error: --devices {devices}: this machine has {devices} GPU(s)"
         + (f" (0 to {devices - 1})" if devices else "")),
        (["--parallel", "2"], "error: --parallel and --devices go with --launcher local"),
        (["--launcher", "local", "--", "--partition=gpu"],
         "error: --max-running and sbatch options after -- go with --launcher slurm"),
    ]  # fmt: skip
    for options, message in cases:
        assert cli.main(["sweep", *study_base, *grid, *options]) == 2
        assert capsys.readouterr().err == message + "\n"
    assert not (tmp_path / "study").exists()  # nothing was written

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert cli.main(["sweep", *study_base, *grid, "--launcher", "slurm"]) == 2
    assert capsys.readouterr().err == (
        "error: --launcher slurm: sbatch not found on PATH (is SLURM installed here?)\n"
    )


def test_a_parent_folder_of_another_study_is_refused(study_base, tmp_path, capsys):
    parent = tmp_path / "study"
    parent.mkdir()
    other = {"kind": "sweep", "config": None, "overrides": ["train.lr=1"], "points": []}
    (parent / "study.json").write_text(json.dumps(other))
    assert cli.main(["sweep", *study_base, "--grid", "seed=1,2"]) == 2
    assert capsys.readouterr().err == (
        f"error: output_dir {parent} holds another study (sweep of no config file with "
        "train.lr=1); choose a new output_dir\n"
    )
    assert cli.main(["cv", "--status", str(parent)]) == 2
    assert capsys.readouterr().err == (
        f"error: {parent} holds a sweep study, not a cv; use emoscale sweep --status {parent}\n"
    )
    assert cli.main(["cv", "--status", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path} is not a study's parent folder (no study.json)\n"
    )


def test_points_starting_together_build_the_tiny_model_cache_once(tmp_path):
    """Parallel points on an empty cache (~/.cache/emoscale): one builds, the others wait."""
    import subprocess
    import sys

    from launching import REPO

    code = f"from emoscale.tiny import demo; print(*demo.prepare(__import__('pathlib').Path({str(tmp_path)!r})))"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    expected = f"{tmp_path / 'data'} {tmp_path / 'tiny-llama-v2'}"
    assert [output.splitlines()[-1] for output in outputs] == [expected, expected]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock", "data", "tiny-llama-v2"]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "tiny-llama-v2").config.vocab_size > 0
