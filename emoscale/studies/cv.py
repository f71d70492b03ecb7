"""`emoscale cv`: k-fold cross-validation; each fold is a run folder under one parent.

    emoscale cv --recipe iemocap_fusion_lora_wavlm model.audio_path=... model.text_path=... \\
        data.path=data/IEMOCAP_full_release              # 5 folds: leave one session out
    emoscale cv --config run.yaml data.num_folds=5 --folds 0,1   # some folds only

The folds are data/folds.py's (`data.fold`, `data.num_folds`): IEMOCAP's five sessions, EmoDB's
speakers, Mastodon's ten dev tenths, speaker folds of a CSV corpus. cv sets data.fold itself.
Finished folds are kept when cv runs again (see sweep.run_points). cv.json and cv.md hold each
fold's dev and test metrics and their mean ± sample standard deviation.
"""

from __future__ import annotations

from pathlib import Path

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.data.folds import num_folds
from emoscale.errors import ConfigError
from emoscale.studies import study_record
from emoscale.studies.launchers import LaunchOptions
from emoscale.studies.report import mean_std, percent
from emoscale.studies.sweep import headline, parent_folder, run_study


def summarize(results: list[tuple[str, Path, dict]]) -> dict:
    """Per fold and mean ± std of every headline metric, for dev and test."""
    summary = {"folds": [], "mean": {}, "std": {}}
    for name, run_dir, metrics in results:
        fold = {"name": name, "run_dir": str(run_dir)}
        summary["folds"].append(
            fold | {split: headline(metrics[split]) for split in ("dev", "test")}
        )
    for split in ("dev", "test"):
        keys = summary["folds"][0][split]
        pairs = {key: mean_std([fold[split][key] for fold in summary["folds"]]) for key in keys}
        summary["mean"][split] = {key: mean for key, (mean, _) in pairs.items()}
        summary["std"][split] = {key: std for key, (_, std) in pairs.items()}
    return summary


def table(summary: dict, title: str) -> str:
    keys = list(summary["mean"]["test"])
    lines = [
        f"{title}: test split, % (± sample standard deviation over {len(summary['folds'])} folds)",
        "",
        "| fold | " + " | ".join(keys) + " |",
        "|" + "---|" * (len(keys) + 1),
    ]
    for fold in summary["folds"]:
        lines.append(
            f"| {fold['name']} | " + " | ".join(percent(100 * fold["test"][k]) for k in keys) + " |"
        )
    mean, std = summary["mean"]["test"], summary["std"]["test"]
    cells = [percent(100 * mean[k], 100 * std[k]) for k in keys]
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_folds(text: str | None, count: int, dataset: str) -> list[int]:
    if text is None:
        return list(range(count))
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--folds {text!r}: expected fold numbers, e.g. 0,1,2") from None
    for position, fold in enumerate(folds):
        if fold in folds[:position]:  # trained once, counted twice in mean ± std
            raise ConfigError(f"--folds {text!r}: fold {fold} given twice")
        if not 0 <= fold < count:
            raise ConfigError(f"--folds: fold {fold} is out of range; {dataset} has {count} folds")
    return folds


def write_summary(parent: Path, record: dict) -> str:
    """cv.json and cv.md from every fold's metrics.json; returns the table."""
    results = [
        (
            entry["name"],
            Path(entry["run_dir"]),
            study_record.read_run_metrics(Path(entry["run_dir"])),
        )
        for entry in record["points"]
    ]
    summary = summarize(results)
    text = table(summary, record["title"])
    study_record.write_summary_files(parent, "cv", summary, text)
    return text


def run(
    config_path: str | Path | None,
    overrides: list[str],
    folds: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    options: LaunchOptions | None = None,
) -> tuple[Path, str]:
    """Train every fold (or launch them: `options`); returns the parent folder and what to print."""
    options = options or LaunchOptions()
    options.check()
    base = load_config(config_path, overrides)
    given = [item for item in overrides if item.partition("=")[0].strip() == "data.fold"]
    if given:  # each fold's data.fold=i replaced it without a word (a recipe's fold: 0 is fine)
        value = given[-1].partition("=")[2]
        raise ConfigError(
            f"override {given[-1]!r}: cv sets data.fold for each fold; choose folds with --folds {value}"
        )
    chosen = parse_folds(folds, num_folds(base.data.dataset, base.data), base.data.dataset)
    parent = parent_folder(base, "cv")
    points = [
        (f"fold{i}", [*overrides, f"data.fold={i}", f"output_dir={parent / f'fold{i}'}"])
        for i in chosen
    ]
    # One fold's corpus up front: more folds than speakers (data.num_folds=100000) is refused
    # here, not after every fold's config was built and the first fold started.
    load_corpus(load_config(config_path, points[0][1]).data)
    configs = [(name, load_config(config_path, items)) for name, items in points]
    record = {
        "kind": "cv",
        "config": str(config_path) if config_path else None,
        "overrides": list(overrides),
        "points": [
            {"name": name, "overrides": items, "run_dir": str(config.output_dir)}
            for (name, items), (_, config) in zip(points, configs, strict=True)
        ],
        "title": f"{base.data.dataset}, {base.method_label}",
    }
    done = f"cv.json, cv.md and one run folder per fold: {parent}"
    return parent, run_study(
        parent, record, configs, options, resume, overwrite, write_summary, done
    )
