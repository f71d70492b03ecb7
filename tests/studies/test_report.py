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
from emoscale.config import load_config
from emoscale.errors import DataError
from emoscale.studies import cv, published, recipes, report, sweep
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


def _as_sst2_runs(seeded_runs: list[Path], folder: Path) -> list[Path]:
    """The seeded runs' folders relabelled as SST-2 runs: runs of the sst2_lora row."""
    runs = []
    for index, run in enumerate(seeded_runs):
        runs.append(folder / f"sst2-lora-{index}")
        runs[-1].mkdir()
        shutil.copy(run / "metrics.json", runs[-1])
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["data"]["dataset"] = "sst2"
        (runs[-1] / "config.yaml").write_text(yaml.safe_dump(config))
    assert recipes.table_row(report.read_run(runs[0]).config) == recipes.table_row(
        recipes.load("sst2_lora")
    )
    return runs


def _cells(text: str, marker: str) -> list[str]:
    line = next(line for line in text.splitlines() if marker in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_papers_number_sits_beside_ours(seeded_runs, tmp_path, capsys):
    runs = _as_sst2_runs(seeded_runs, tmp_path)
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "shipped")]) == 0
    cells = _cells(capsys.readouterr().out, "| LoRA |")
    # LLM paper, Table 3, SST-2: "ChatGLM2 (LoRA)	95.69	95.69" (Acc, macro-F1)
    assert (cells[0], cells[4], cells[6], cells[8]) == ("SST-2", "95.69", "95.69", "–")
    with open(tmp_path / "shipped" / "report.csv") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["accuracy_paper"], line["paper_source"]) == ("95.69", "LLM paper, Table 3")

    # A researcher's own numbers, in the short form: they replace the shipped ones.
    targets = tmp_path / "my_targets.yaml"
    targets.write_text("sst2_lora: {accuracy: 91.5, macro_f1: null, source: Table 2}\n")
    arguments = ["report", *map(str, runs), "--out", str(tmp_path), "--targets", str(targets)]
    assert cli.main(arguments) == 0
    text = capsys.readouterr().out
    cells = _cells(text, "| LoRA | 2 |")
    assert (cells[4], cells[6]) == ("91.5", "–")  # Acc (paper) as given, macro-F1 (paper)
    with open(tmp_path / "report.csv") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["accuracy_paper"], line["paper_source"]) == ("91.5", "Table 2")
    # --targets FILE also sets out the file's rows, ours beside the row of our recipe.
    ours = {
        metric: "{:.2f} ± {:.2f}".format(
            *report.mean_std(
                [100 * json.loads((r / "metrics.json").read_text())["test"][metric] for r in runs]
            )
        )
        for metric in ("accuracy", "macro_f1")
    }
    assert _cells(text, "| SST-2 | sst2_lora |") == [
        "SST-2", "sst2_lora", "`sst2_lora`", "91.5", ours["accuracy"], "–", ours["macro_f1"],
    ]  # fmt: skip


def test_report_targets_prints_every_row_of_both_papers(seeded_runs, tmp_path, capsys):
    runs = _as_sst2_runs(seeded_runs, tmp_path)
    assert cli.main(["report", *map(str, runs), "--out", str(tmp_path / "r"), "--targets"]) == 0
    text = capsys.readouterr().out
    rows = published.read_targets()
    for row in rows:
        numbers = [published.number_text(v) for v in row.values.values() if v is not None]
        assert any(
            f"| {row.dataset} | {published.row_text(row)} |" in line
            and all(f"| {number} |" in line for number in numbers)
            for line in text.splitlines()
        ), row
    ours = "{:.2f} ± {:.2f}".format(
        *report.mean_std(
            [100 * json.loads((r / "metrics.json").read_text())["test"]["accuracy"] for r in runs]
        )
    )
    # LLM paper, Table 3: the paper's SST-2 LoRA accuracy, then ours; other rows have none of ours.
    assert _cells(text, "| SST-2 | ChatGLM2 (LoRA) |")[3:5] == ["95.69", ours]
    assert _cells(text, "| SST-2 | ChatGLM2 (P-Tuning) |")[3:5] == ["95.20", "–"]
    assert _cells(text, "| SST-2 | BT-TAPT (2021) [19] |")[2:5] == [
        "published, no emoscale recipe", "92.40", "–"]  # fmt: skip
    with open(tmp_path / "r" / "papers.csv", encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == len(rows) == 62
    assert lines[0]["system"] == "TFR-Net (2021) [15]" and lines[0]["accuracy"] == "83.49"

    # Without runs: the papers' tables alone.
    assert cli.main(["report", "--targets", "--out", str(tmp_path / "alone")]) == 0
    alone = capsys.readouterr().out
    assert "| M3ED | ChatGLM2 (LoRA) | `m3ed_lora` | 42.54 |  | 33.31 | 23.59 |" in alone
    assert "| IEMOCAP | Ghosh et al. (2022) [31] [speaker dependent] | published, no emoscale recipe | – | 81.2 |" in alone  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "alone").iterdir()) == ["papers.csv", "report.md"]
    assert cli.main(["report", "--out", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no run folders given (or --targets for the papers' tables alone)"
    )
    assert not (tmp_path / "none").exists()


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
            "entry 1 (sst2_lroa): recipe 'sst2_lroa' is not shipped (did you mean 'sst2_lora'?); `emoscale recipes` lists them",
        ),
        (
            "sst2_lora: {acc: 91.5}",
            "entry 1 (sst2_lora): unknown key 'acc' (one of accuracy, macro_f1, weighted_f1, ua, wa, source, dataset, system, recipe, note)",
        ),
        (
            "sst2_lora: {accuracy: 0.915%}",
            "entry 1 (sst2_lora): accuracy must be a number in % (above 1, at most 100) as the paper prints it, or null; got '0.915%'",
        ),
        (
            "sst2_lora: {accuracy: 191.5}",
            "entry 1 (sst2_lora): accuracy must be a number in % (above 1, at most 100) as the paper prints it, or null; got 191.5",
        ),
        ("- sst2_lora", "entry 1: expected {source, dataset, system, recipe, <metric>: %}"),
        ("sst2_lora", "expected a list of the papers' rows (or recipe: {metric: %})"),
        (
            "sst2_lora: {accuracy: 0.915}",
            "entry 1 (sst2_lora): accuracy must be a number in % (above 1, at most 100) as the paper prints it, or null; got 0.915",
        ),
        ("# nothing yet", "the file is empty (expected a list of the papers' rows)"),
        (
            "- {source: T2, dataset: MOSI-2, system: X, recipe: mosi3_lora, accuracy: 80.0}",
            "entry 1 (X): dataset 'MOSI-2' is not recipe mosi3_lora's ('MOSI-3')",
        ),
        (
            "- {source: T2, dataset: MOSI, system: X, accuracy: 80.0}",
            "entry 1 (X): dataset 'MOSI' is no recipe's (one of CH-SIMS-2, Friends, IEMOCAP, M3ED, MOSI-2, MOSI-3, Mastodon, SST-2, SST-5)",
        ),
        (
            "- {source: T2, system: X, accuracy: 80.0}",
            "entry 1 (X): a row without a recipe needs dataset",
        ),
        (
            "- {source: T2, dataset: SST-2, system: X, accuracy: 80.0}\n"
            "- {source: T2, dataset: SST-2, system: X, accuracy: 81.0}",
            "entry 2 (X): T2, SST-2, X is listed twice",
        ),
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


DAMAGED_METRICS = {  # metrics.json as written -> what the one line says after the file's name
    '{"dev": {"accuracy": 0.5}, "test": {"accuracy": 1e400}}': "key 'test.accuracy' is 1e400",
    '{"dev": {"accuracy": NaN}, "test": {}}': "key 'dev.accuracy' is NaN",
    '{"dev": {"per_class": [{"f1": -Infinity}]}}': "key 'dev.per_class[0].f1' is -Infinity",
}


@pytest.mark.parametrize("written", list(DAMAGED_METRICS))
def test_cv_sweep_and_report_read_metrics_strictly(seeded_runs, tmp_path, capsys, written):
    """A point's or run's metrics.json holding a number that is not finite (1e400 reads as inf in
    Python's json) is one line naming the file and key, in cv's and sweep's summaries, a sweep's
    finished point and `emoscale report` (exit 2); a damaged file names its line."""
    run = tmp_path / "run"
    shutil.copytree(seeded_runs[0], run)
    (run / "metrics.json").write_text(written)
    expected = f"{run / 'metrics.json'}: {DAMAGED_METRICS[written]} (not a finite number)"
    points = [{"name": "fold0", "run_dir": str(run), "assignments": {"lora.r": "8"}}]
    with pytest.raises(DataError) as refused:
        cv.write_summary(tmp_path, {"points": points, "title": "cv"})
    assert str(refused.value) == expected
    with pytest.raises(DataError) as refused:
        sweep.write_summary(tmp_path, {"points": points, "grid": ["lora.r"], "eval_metric": "ua"})
    assert str(refused.value) == expected
    config = load_config(run / "config.yaml", [f"output_dir={run}"])
    with pytest.raises(DataError) as refused:
        sweep.run_points([("lora.r=8", config)])  # finished earlier: read, not rerun
    assert str(refused.value) == expected
    assert not (tmp_path / "cv.json").exists() and not (tmp_path / "sweep.json").exists()
    capsys.readouterr()
    assert cli.main(["report", str(run)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {expected}"


def test_a_cv_point_without_results_or_with_damaged_json_is_one_line(seeded_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(seeded_runs[0], run)
    points = [{"name": "fold0", "run_dir": str(run)}]
    for written, problem in (
        ('{"dev": {"accuracy": 0.5}}', "expected a JSON object with dev and test results"),
        ('{"dev": {"accuracy": 0.5},', "1: not valid JSON (Expecting property name enclosed in double quotes)"),
        ('{"dev": {"accuracy": 0.5}, "test": {}}', "dev has no macro_f1, weighted_f1, ua, wa; expected accuracy, macro_f1, weighted_f1, ua, wa"),
    ):  # fmt: skip
        (run / "metrics.json").write_text(written)
        with pytest.raises(DataError) as refused:
            cv.write_summary(tmp_path, {"points": points, "title": "cv"})
        separator = ":" if problem[0].isdigit() else ": "
        assert str(refused.value) == f"{run / 'metrics.json'}{separator}{problem}"
