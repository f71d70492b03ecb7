"""`emoscale report`: finished runs as the papers' tables (markdown, CSV) and a bar chart (PNG).

    emoscale report runs/sst2-lora-seed1 runs/sst2-lora-seed2 runs/iemocap-cv --out reports
    emoscale report runs/sst2-lora-* --targets      # also every row of the papers' tables

Runs that share a row of the papers' tables (dataset x method: recipes.table_row) are seeds or folds
of one result, shown as mean ± sample standard deviation. A folder holding runs (an `emoscale cv`
or `emoscale sweep` parent) stands for all the runs below it; a sweep's points stay rows of their
own. The papers' published numbers (recipes/targets.yaml) sit in a column beside ours. Numbers are
percentages of the chosen split (test by default), as the papers print them. With --targets, the
report also sets out every published row (published.py), table by table as the papers print them,
our mean beside each row that a recipe reproduces; without runs, it is the papers' tables alone.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from emoscale.config.loading import read_config_file
from emoscale.data.encoding import read_json
from emoscale.data.folds import natural_key
from emoscale.errors import DataError, EmoscaleError
from emoscale.evaluation.metrics import HEADLINE
from emoscale.output_folder import check_creatable
from emoscale.studies import published, recipes

# The columns of each paper's tables: the LLM paper reports accuracy and F1, LoRA-MER UA and WA.
# (The LLM paper's Table 5 adds UA for Friends and M3ED.)
FAMILY_METRICS = {
    "prompt_lm": ("accuracy", "macro_f1", "weighted_f1", "ua"),
    "fusion": ("ua", "wa"),
}
FAMILY_TITLES = {
    "prompt_lm": "LLM as a classifier by prompting",
    "fusion": "Speech + text (LoRA-MER)",
}
METRIC_NAMES = published.METRIC_NAMES
SEARCH_DEPTH = 3  # folders below a given path searched for runs (runs/<cv parent>/<fold>)


@dataclass
class Run:
    path: Path
    config: dict  # config.yaml as written by the run (read as YAML: older runs need not validate)
    metrics: dict  # metrics.json: {"dev": {...}, "test": {...}}
    setting: str = ""  # the sweep point ("lora.r=4"), so that sweep points are not averaged


@dataclass
class ReportRow:
    row: recipes.Row
    setting: str
    runs: list[Run]
    mean: dict[str, float] = field(default_factory=dict)  # metric -> %
    std: dict[str, float] = field(default_factory=dict)
    paper: dict[str, float | None] = field(default_factory=dict)
    source: str = ""
    recipe: str | None = None  # the recipe whose published row this is

    @property
    def method(self) -> str:
        return f"{self.row.method} [{self.setting}]" if self.setting else self.row.method


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def percent(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if std is None else f"{value:.2f} ± {std:.2f}"


def read_metrics(folder: Path) -> dict:
    """A finished run's metrics.json, strictly (report, and cv/sweep summaries of kept points):
    a JSON object whose dev and test hold numbers for the headline metrics. A file edited by hand
    (a value as text, a split as a list) failed with a TypeError inside mean ± std."""
    path = Path(folder) / "metrics.json"
    metrics = read_json(path)  # strict: a NaN is not a result to tabulate
    if not isinstance(metrics, dict):
        raise DataError(f"{path}: expected a JSON object")
    for split in ("dev", "test"):
        values = metrics.get(split, {})
        if not isinstance(values, dict):
            raise DataError(f"{path}: {split!r} is {values!r}, expected an object of metrics")
        for key in HEADLINE:
            value = values.get(key)
            if key in values and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise DataError(f"{path}: {split}.{key} is {value!r}, expected a number")
    return metrics


def read_run(folder: Path, setting: str = "") -> Run:
    config = read_config_file(folder / "config.yaml")  # a damaged one: one line, not a traceback
    return Run(folder, config, read_metrics(folder), setting)


def _sweep_settings(folder: Path) -> dict[str, str]:
    """A sweep parent's point folder -> its varied keys except the seed (seeds are averaged)."""
    file = folder / "sweep.json"
    if not file.is_file():
        return {}
    points = read_json(file)["points"]
    return {
        point["name"]: ", ".join(
            f"{key}={value}" for key, value in point["assignments"].items() if key != "seed"
        )
        for point in points
    }


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every finished run (a folder with metrics.json and config.yaml) at or below the paths."""
    found: list[Run] = []

    def search(folder: Path, depth: int, setting: str) -> None:
        if (folder / "metrics.json").is_file() and (folder / "config.yaml").is_file():
            found.append(read_run(folder, setting))
            return
        if depth == 0:
            return
        settings = _sweep_settings(folder)
        children = sorted(
            (p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)
        )
        for child in children:  # fold2 before fold10
            search(child, depth - 1, settings.get(child.name, setting))

    for item in paths:
        folder = Path(item)
        if not folder.is_dir():
            raise EmoscaleError(f"{folder} is not a folder")
        before = len(found)
        search(folder, SEARCH_DEPTH, "")
        if len(found) == before:
            raise EmoscaleError(f"{folder}: no finished run (metrics.json) in it or below it")
    return found


def table_rows(
    runs: list[Run], split: str = "test", targets_file: str | Path | None = None
) -> list[ReportRow]:
    """Runs grouped by table row (and sweep point), with mean ± std and the paper's numbers."""
    groups: dict[tuple, ReportRow] = {}
    for run in runs:
        if split not in run.metrics:
            raise EmoscaleError(f"{run.path}: metrics.json has no {split!r} split")
        row = recipes.table_row(run.config)
        groups.setdefault((row, run.setting), ReportRow(row, run.setting, [])).runs.append(run)
    targets = row_targets(published.read_targets(targets_file))
    for report_row in groups.values():
        for metric in HEADLINE:
            values = [100 * run.metrics[split][metric] for run in report_row.runs]
            report_row.mean[metric], report_row.std[metric] = mean_std(values)
        target = targets.get(report_row.row) if not report_row.setting else None
        if target is not None:
            report_row.paper = {metric: target.values.get(metric) for metric in HEADLINE}
            report_row.source, report_row.recipe = target.source, target.recipe
        else:
            report_row.paper = dict.fromkeys(HEADLINE)
    return sorted(groups.values(), key=lambda row: (recipes.row_order(row.row), row.setting))


def row_targets(rows: list[published.PaperRow]) -> dict[recipes.Row, published.PaperRow]:
    """Table row -> the published row of the recipe with that table row (the recipe's target)."""
    return {
        recipes.table_row(recipes.load(name)): target
        for name, target in published.recipe_targets(rows).items()
    }


def markdown(
    rows: list[ReportRow], split: str = "test", targets_file: str | Path | None = None
) -> str:
    parts = []
    for family, metrics in FAMILY_METRICS.items():
        chosen = [row for row in rows if row.row.family == family]
        if not chosen:
            continue
        header = ["dataset", "method", "runs"]
        for metric in metrics:
            header += [METRIC_NAMES[metric], f"{METRIC_NAMES[metric]} (paper)"]
        lines = [
            f"### {FAMILY_TITLES[family]}: {split} split, %",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for row in chosen:
            cells = [row.row.dataset, row.method, str(len(row.runs))]
            for metric in metrics:
                std = row.std[metric] if len(row.runs) > 1 else None
                cells += [percent(row.mean[metric], std), published.number_text(row.paper[metric])]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    notes = [
        "mean ± sample standard deviation over a row's runs (seeds or folds); paper: the papers'",
        f"published numbers from {targets_file or 'emoscale/recipes/targets.yaml'}, – where none"
        " is recorded.",
        "",
        "Runs:",
    ]
    notes += [
        f"- {row.row.dataset}, {row.method}: " + ", ".join(str(run.path) for run in row.runs)
        for row in rows
    ]
    return "\n\n".join(parts) + "\n\n" + "\n".join(notes) + "\n"


def write_csv(rows: list[ReportRow], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["family", "dataset", "method", "runs"]
        for metric in HEADLINE:
            header += [f"{metric}_mean", f"{metric}_std", f"{metric}_paper"]
        writer.writerow(header + ["paper_source", "run_dirs"])
        for row in rows:
            cells = [row.row.family, row.row.dataset, row.method, len(row.runs)]
            for metric in HEADLINE:
                paper = row.paper[metric]
                cells += [
                    f"{row.mean[metric]:.4f}",
                    f"{row.std[metric]:.4f}",
                    "" if paper is None else paper,
                ]
            writer.writerow(cells + [row.source, ";".join(str(run.path) for run in row.runs)])


def bar_chart(rows: list[ReportRow], path: Path, split: str = "test") -> None:
    """One panel per model family: a bar per row and metric (error bar: std), the paper as a dash."""
    from emoscale.evaluation.plots import plt  # pyplot on the Agg backend: files only, no display

    families = [family for family in FAMILY_METRICS if any(r.row.family == family for r in rows)]
    widths = [max(4.0, 1.3 * sum(r.row.family == f for r in rows) + 1.5) for f in families]
    figure, axes = plt.subplots(
        1, len(families), figsize=(sum(widths), 4.5), squeeze=False, width_ratios=widths
    )
    for panel, family in zip(axes[0], families, strict=True):
        chosen = [row for row in rows if row.row.family == family]
        metrics = FAMILY_METRICS[family]
        width = 0.8 / len(metrics)
        for index, metric in enumerate(metrics):
            xs = [
                position + (index - (len(metrics) - 1) / 2) * width
                for position in range(len(chosen))
            ]
            panel.bar(
                xs,
                [row.mean[metric] for row in chosen],
                width,
                yerr=[row.std[metric] if len(row.runs) > 1 else math.nan for row in chosen],
                capsize=3,
                label=METRIC_NAMES[metric],
            )
            papers = [(x, row.paper[metric]) for x, row in zip(xs, chosen, strict=True)]
            papers = [(x, value) for x, value in papers if value is not None]
            if papers:
                panel.scatter(*zip(*papers, strict=True), marker="_", s=400, color="black", zorder=3,
                              label="paper" if index == 0 else None)  # fmt: skip
        panel.set_xticks(
            range(len(chosen)), [f"{row.row.dataset}\n{row.method}" for row in chosen], fontsize=8
        )
        panel.set(title=FAMILY_TITLES[family], ylabel=f"{split} %", ylim=(0, 100))
        panel.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


REPORT_FILES = ("report.csv", "report.png", "papers.csv")


def _check_report_folder(out: Path) -> None:
    """A report goes into any folder (beside the runs, typically), but replaces a report.md only
    if it is an earlier report: emoscale's start with a '### ' table title (issue 12)."""
    check_creatable(out, "--out")  # a file, a dangling link above it, a read-only place
    earlier = out / "report.md"
    if earlier.is_file() and not earlier.read_bytes().startswith(b"### "):
        raise EmoscaleError(
            f"--out {out} holds a report.md that emoscale did not write; choose another folder"
        )
    # report.csv, report.png and papers.csv are replaced only beside an earlier emoscale report:
    # a user's own report.csv in a folder without one is theirs (round 4 of the bad-input probes).
    theirs = [name for name in REPORT_FILES if (out / name).exists()]
    if theirs and not earlier.is_file():
        raise EmoscaleError(
            f"--out {out} holds {', '.join(theirs)} but no emoscale report.md; emoscale never "
            "replaces what it did not write: choose another folder"
        )


def write_report(
    paths: list[str | Path],
    out: str | Path,
    split: str = "test",
    targets_file: str | Path | None = None,
    papers: bool = False,
) -> tuple[str, Path]:
    """report.md, report.csv and report.png in `out` (and with `papers`, every published row in
    report.md and papers.csv); returns the markdown and the folder. Without runs, `papers` only."""
    if not paths and not papers:
        raise EmoscaleError("no run folders given (or --targets for the papers' tables alone)")
    published_rows = published.read_targets(targets_file) if papers else []
    rows = table_rows(find_runs(paths), split, targets_file) if paths else []
    out = Path(out)
    _check_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, split, targets_file) if rows else ""
    if papers:
        ours = {
            row.recipe: {m: percent(row.mean[m], row.std[m] if len(row.runs) > 1 else None)
                         for m in HEADLINE}
            for row in rows if row.recipe
        }  # fmt: skip
        title = f"### The papers' tables ({targets_file or published.TARGETS_FILE.name})"
        ours_note = f"; (ours): our {split} split, mean ± std over the runs above" if rows else ""
        notes = f"As printed, in %; – where the paper prints none{ours_note}."
        text += f"{title}\n\n{notes}\n\n{published.tables_markdown(published_rows, ours)}"
        published.write_csv(published_rows, out / "papers.csv")
    (out / "report.md").write_text(text)
    if rows:
        write_csv(rows, out / "report.csv")
        bar_chart(rows, out / "report.png", split)
    return text, out
