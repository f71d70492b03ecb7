"""A cv submitted as one real SLURM job array (tests/slurm_cluster.py, one node) gives the same
summary as the same cv run one fold after another; sbatch's refusal reaches the user as one line."""

from __future__ import annotations

import json
import sys
import time

import pytest
from corpus_files import write_mastodon

from emoscale import cli
from emoscale.studies import study_record

pytestmark = [
    pytest.mark.slow,
    pytest.mark.multiprocess,
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture
def cv_argv(tiny_llama, tmp_path):
    def dialogues(count: int, tag: str) -> list[str]:
        return [
            f"{p} {'*+-'[(d + p) % 3]}_I {tag} post {d} {p}" for d in range(count) for p in range(2)
        ]

    corpus = write_mastodon(tmp_path / "mastodon", dialogues(8, "train"), dialogues(3, "test"))
    return [
        "cv", "--recipe", "mastodon_lora", f"model.path={tiny_llama}", f"data.path={corpus}",
        "data.num_folds=2", "model.dtype=float32", "train.mixed_precision='no'", "train.max_steps=2",
    ]  # fmt: skip


def without_folders(summary: dict) -> dict:
    for fold in summary["folds"]:
        fold.pop("run_dir")
    return summary


def test_a_job_array_cv_equals_the_sequential_cv(
    slurm_one_node, cv_argv, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the array's processes: one thread, like this one
    parent = tmp_path / "array"
    submitted = time.monotonic()
    assert (
        cli.main([*cv_argv, f"output_dir={parent}", "--launcher", "slurm", "--max-running", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("submitted SLURM job array ") and f"emoscale cv --status {parent}" in out
    job_id = out.split()[4]
    assert cli.main(["cv", "--status", str(parent)]) == 3  # just submitted: not done
    states = [line.split()[1] for line in capsys.readouterr().out.splitlines()[:2]]
    assert set(states) <= {"pending", "running", "done"}
    slurm_one_node.wait(job_id)
    record = json.loads((parent / "study.json").read_text())
    states = [study_record.read_state(parent, name) for name in ("fold0", "fold1")]
    waited = min(state["started"] for state in states) - record["jobs"][0]["submitted"]
    sys.__stderr__.write(  # the figures the README quotes (pytest -s shows them)
        f"\njob array of 2 folds: first task started {waited:.1f} s after sbatch, "
        f"all done {time.monotonic() - submitted:.1f} s after it\n"
    )
    assert cli.main(["cv", "--status", str(parent)]) == 0
    assert "2 of 2 done, 0 failed" in capsys.readouterr().out
    assert cli.main([*cv_argv, f"output_dir={tmp_path / 'sequential'}"]) == 0
    array = json.loads((parent / "cv.json").read_text())
    sequential = json.loads((tmp_path / "sequential" / "cv.json").read_text())
    assert without_folders(array) == without_folders(sequential)
    assert [fold["name"] for fold in array["folds"]] == ["fold0", "fold1"]
    # again: every fold finished, nothing is submitted
    assert cli.main([*cv_argv, f"output_dir={parent}", "--launcher", "slurm"]) == 0
    assert "every point had finished earlier" in capsys.readouterr().out


def test_sbatch_refusing_the_array_is_one_line(slurm_one_node, cv_argv, tmp_path, capsys):
    argv = [
        *cv_argv,
        f"output_dir={tmp_path / 'cv'}",
        "--launcher",
        "slurm",
        "--",
        "--partition=nowhere",
    ]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        "error: sbatch refused the job array: "
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
