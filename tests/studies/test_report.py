"""`emoscale report`: real run folders become one table row with mean ± std, the paper's number
beside it, a CSV and a bar chart; cv and sweep parents stand for the runs below them."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from emoscale import cli
from emoscale.studies import recipes, report
from emoscale.tiny import demo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def seeded_runs(tiny_llama, tmp_path_factory) -> list[Path]:
    """The same LoRA run trained with two seeds, through `emoscale train`."""
    corpus = demo.write_corpus(
        tmp_path_factory.mktemp("report_corpus"), {"train": 48, "dev": 16, "test": 16}
    )
    folders = []
    for seed in (1, 2):
        folder = tmp_path_factory.mktemp(f"seed{seed}") / "run"
        overrides = demo.overrides(corpus, tiny_llama) + ["train.max_steps=6", f"seed={seed}"]
        assert cli.main(["train", *overrides, f"output_dir={folder}"]) == 0
        folders.append(folder)
    return folders


def test_mean_and_sample_standard_deviation():
    assert report.mean_std([0.5]) == (0.5, 0.0)
    mean, std = report.mean_std([1.0, 3.0])
    assert (mean, std) == (2.0, pytest.approx(math.sqrt(2.0)))


def test_two_seeds_make_one_row_with_mean_std_csv_and_chart(seeded_runs, tmp_path, capsys):
    out = tmp_path / "reports"
    assert cli.main(["report", *map(str, seeded_runs), "--out", str(out)]) == 0
    accuracy = [
        100 * json.loads((r / "metrics.json").read_text())["test"]["accuracy"] for r in seeded_runs
    ]
    mean, std = report.mean_std(accuracy)
    text = (out / "report.md").read_text()
    assert text in capsys.readouterr().out
    corpus = Path(report.read_run(seeded_runs[0]).config["data"]["path"])
    row = next(line for line in text.splitlines() if "| LoRA | 2 |" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == [
        corpus.name,
        "LoRA",
        "2",
        f"{mean:.2f} ± {std:.2f}",
    ]  # a CSV corpus: its folder
    assert cells[4] == "–"  # a CSV corpus has no paper number
    assert "### LLM as a classifier by prompting: test split, %" in text
    assert all(str(r) in text for r in seeded_runs)  # the runs behind each row are listed
    with open(out / "report.csv") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["method"], line["runs"]) == ("LoRA", "2")
    assert float(line["accuracy_mean"]) == pytest.approx(mean, abs=1e-3)
    assert float(line["accuracy_std"]) == pytest.approx(std, abs=1e-3)
    assert line["accuracy_paper"] == ""
    image = matplotlib.image.imread(out / "report.png")
    assert image.shape[0] > 200 and image.shape[1] > 200


def test_the_papers_number_sits_beside_ours(seeded_runs, tmp_path, capsys):
    """A researcher's own copy of the targets (the shipped file has none filled yet), for runs
    of the sst2_lora row: the seeded runs' folders, relabelled as SST-2 runs."""
    runs = []
    for index, run in enumerate(seeded_runs):
        runs.append(tmp_path / f"sst2-lora-{index}")
        runs[-1].mkdir()
        shutil.copy(run / "metrics.json", runs[-1])
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["data"]["dataset"] = "sst2"
        (runs[-1] / "config.yaml").write_text(yaml.safe_dump(config))
    row = recipes.table_row(report.read_run(runs[0]).config)
    assert row == recipes.table_row(recipes.load("sst2_lora"))
    targets = tmp_path / "my_targets.yaml"
    targets.write_text("sst2_lora: {accuracy: 91.5, macro_f1: null, source: Table 2}\n")
    arguments = ["report", *map(str, runs), "--out", str(tmp_path), "--targets", str(targets)]
    assert cli.main(arguments) == 0
    text, out = capsys.readouterr().out, tmp_path
    cells = [
        cell.strip()
        for cell in next(line for line in text.splitlines() if "| LoRA |" in line)
        .strip("|")
        .split("|")
    ]
    assert (cells[4], cells[6]) == ("91.50", "–")  # Acc (paper), macro-F1 (paper)
    with open(out / "report.csv") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["accuracy_paper"], line["paper_source"]) == ("91.5", "Table 2")


def test_a_cv_parent_is_its_folds_and_sweep_points_stay_apart(seeded_runs, tmp_path):
    def copy(run: Path, to: Path) -> None:
        to.mkdir(parents=True)
        for name in ("config.yaml", "metrics.json"):
            shutil.copy(run / name, to / name)

    cv_parent, sweep_parent = tmp_path / "cv", tmp_path / "sweep"
    for index, run in enumerate(seeded_runs):
        copy(run, cv_parent / f"fold{index}")
        copy(run, sweep_parent / f"lora.r={4 * (index + 1)},seed=1")
    points = [
        {"name": f"lora.r={r},seed=1", "assignments": {"lora.r": str(r), "seed": "1"}}
        for r in (4, 8)
    ]
    (sweep_parent / "sweep.json").write_text(json.dumps({"points": points}))
    rows = report.table_rows(report.find_runs([cv_parent, sweep_parent]))
    assert [(row.method, len(row.runs)) for row in rows] == [
        ("LoRA", 2),
        ("LoRA [lora.r=4]", 1),
        ("LoRA [lora.r=8]", 1),
    ]


def test_every_run_folder_holds_its_plots(seeded_runs):
    for run in seeded_runs:
        for name in ("confusion_matrix.png", "curves.png"):
            image = matplotlib.image.imread(run / name)
            assert image.ndim == 3 and min(image.shape[:2]) > 100, name
            assert image.std() > 0.01, name  # something is drawn


def test_a_folder_without_runs_is_an_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path}: no finished run (metrics.json) in it or below it"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "sst2_lroa: {accuracy: 91.5}",
            "sst2_lroa: not a shipped recipe (did you mean 'sst2_lora'?); `emoscale recipes` lists them",
        ),
        (
            "sst2_lora: {acc: 91.5}",
            "sst2_lora: unknown metric 'acc' (one of accuracy, macro_f1, weighted_f1, ua, wa, source)",
        ),
        (
            "sst2_lora: {accuracy: 0.915%}",
            "sst2_lora: accuracy must be a number in % (above 1, at most 100) as the paper prints it, or null; got '0.915%'",
        ),
        (
            "sst2_lora: {accuracy: 191.5}",
            "sst2_lora: accuracy must be a number in % (above 1, at most 100) as the paper prints it, or null; got 191.5",
        ),
        ("- sst2_lora", "expected a mapping of recipe name -> {metric: value}"),
        (
            "sst2_lora: {accuracy: 0.915}",
            "sst2_lora: accuracy must be a number in % (above 1, at most 100) as the paper prints it, or null; got 0.915",
        ),
        ("# nothing yet", "the file is empty (expected recipe name -> {metric: value})"),
    ],
)
def test_a_bad_targets_file_is_one_line_naming_the_entry(
    seeded_runs, tmp_path, capsys, content, message
):
    targets = tmp_path / "targets.yaml"
    targets.write_text(content + "\n")
    out = tmp_path / "report"
    code = cli.main(
        ["report", *map(str, seeded_runs), "--out", str(out), "--targets", str(targets)]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {targets}: {message}"
    assert not out.exists()  # nothing written


def test_a_targets_file_with_a_yaml_mistake_names_its_line(seeded_runs, tmp_path, capsys):
    targets = tmp_path / "targets.yaml"
    targets.write_text("sst2_lora: {accuracy: 91.5}\nsst5_lora: {accuracy: [}\n")
    code = cli.main(
        ["report", str(seeded_runs[0]), "--out", str(tmp_path / "r"), "--targets", str(targets)]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {targets}:2: not valid YAML (")
