"""`emoscale sweep`: a grid over config keys; each point is a run folder under one parent.

    emoscale sweep --recipe sst2_lora model.path=... data.path=... \\
        --grid lora.r=4,8,16 train.lr=1e-4,3e-4          # 6 runs: runs/sst2-lora-sweep-<time>/...
    emoscale sweep --config run.yaml --grid seed=1,2,3       # three seeds, for mean ± std

Every point's config is built and validated before the first one trains, so a bad value stops the
sweep at once. Run it again to go on: finished points (metrics.json) are kept, an interrupted one
continues with --resume, --overwrite redoes them all. sweep.json and sweep.md list every point's
dev and test metrics; the best point on dev (`eval.metric`) is marked.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from emoscale.config import RunConfig, load_config
from emoscale.errors import ConfigError
from emoscale.evaluation.metrics import HEADLINE
from emoscale.studies import launchers, study_record


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['lora.r=4,8', 'lora.target_modules=[q_proj,v_proj],[q_proj]'] -> key -> value texts.
    Values split on commas outside brackets and quotes; each is read like a command-line value."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text:
            raise ConfigError(f"--grid {item!r}: expected key=value1,value2,... e.g. lora.r=4,8,16")
        if key in grid:
            raise ConfigError(f"--grid: key {key!r} given twice")
        if key == "output_dir":  # every point's folder is named after its values, below the parent
            raise ConfigError(
                f"--grid {item!r}: output_dir is the sweep's parent folder, one for all points; "
                "set it once, outside --grid"
            )
        values, depth, quote, current = [], 0, None, ""
        for char in text:
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            elif char == "," and depth == 0:
                values.append(current)
                current = ""
                continue
            current += char
        values.append(current)
        if any(not value.strip() for value in values):
            raise ConfigError(f"--grid {item!r}: an empty value")
        grid[key] = [value.strip() for value in values]
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """The cartesian product, the first key varying slowest."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def check_distinct_points(configs: list[tuple[str, RunConfig]]) -> None:
    """Every point its own config and its own run folder. A value given twice (`seed=1,1`, or
    `train.lr=1e-3,0.001`, equal once read) trained one config twice, or, where the folder names
    met, kept the first run for the second point: one run counted twice in mean ± std."""
    names: dict[str, str] = {}
    settings: dict[str, str] = {}
    for name, config in configs:
        setting = json.dumps(config.model_dump(exclude={"output_dir"}), sort_keys=True, default=str)
        if setting in settings:
            first = settings[setting]
            same = (
                f"point {name!r} comes twice"
                if first == name
                else (f"points {first!r} and {name!r} are the same config")
            )
            raise ConfigError(f"--grid: {same}; give each value once")
        if config.output_dir in names:
            raise ConfigError(
                f"--grid: points {names[config.output_dir]!r} and {name!r} would share the run "
                f"folder {config.output_dir}; give values that differ in letters or digits"
            )
        names[config.output_dir] = name
        settings[setting] = name


def point_name(assignments: dict[str, str]) -> str:
    """A folder name for a point: 'lora.r=4,train.lr=1e-4' with unsafe characters replaced."""
    text = ",".join(f"{key}={value}" for key, value in assignments.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "-", text)


def parent_folder(base: RunConfig, kind: str) -> Path:
    """output_dir, else runs/<dataset>-<method>-<kind>-<time>. Launched on several processes,
    each would stamp its own time: there the parent must be named."""
    if base.output_dir is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"config key 'output_dir': required for {kind} on several processes")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = Path(base.output_dir or f"runs/{base.data.dataset}-{base.method_label}-{kind}-{stamp}")
    check_parent(parent, base, kind)
    return parent


def check_parent(parent: Path, base: RunConfig, kind: str) -> None:
    """Not a run folder, an input folder or a folder of the user's (issue 12): run_folder's rules."""
    from emoscale.training.run_folder import check_study_parent

    check_study_parent(parent, base, kind)


def run_points(
    points: list[tuple[str, RunConfig]], resume: bool = False, overwrite: bool = False
) -> list[tuple[str, Path, dict]]:
    """Train each (name, config) in turn; a point whose run folder is finished is read, not rerun."""
    from emoscale import train

    results = []
    for name, config in points:
        run_dir = Path(config.output_dir)
        if (run_dir / "metrics.json").is_file() and not overwrite:
            print(f"{name}: finished earlier, kept ({run_dir})")
            results.append((name, run_dir, study_record.read_run_metrics(run_dir)))
            continue
        print(f"{name}: training into {run_dir}")
        interrupted = resume and (run_dir / "config.yaml").is_file()
        run_dir, metrics = train.run(config, resume=interrupted, overwrite=overwrite)
        results.append((name, run_dir, metrics))
    return results


def headline(metrics: dict) -> dict[str, float]:
    return {key: metrics[key] for key in (*HEADLINE, "invalid_rate") if key in metrics}


def write_summary(parent: Path, record: dict) -> str:
    """sweep.json and sweep.md from every point's metrics.json; returns the table."""
    from emoscale.studies import study_record
    from emoscale.studies.report import percent

    grid, metric = record["grid"], record["eval_metric"]
    summary = []
    for entry in record["points"]:
        metrics = study_record.read_run_metrics(Path(entry["run_dir"]))
        summary.append(
            {
                "name": entry["name"],
                "assignments": entry["assignments"],
                "run_dir": entry["run_dir"],
                "dev": headline(metrics["dev"]),
                "test": headline(metrics["test"]),
            }
        )
    best = max(range(len(summary)), key=lambda i: summary[i]["dev"][metric])
    header = [*grid, f"dev {metric}", *(f"test {key}" for key in HEADLINE)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, point in enumerate(summary):
        cells = [*point["assignments"].values(), percent(100 * point["dev"][metric])]
        cells += [percent(100 * point["test"][key]) for key in HEADLINE]
        if index == best:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    table = (
        f"Sweep over {', '.join(grid)} ({len(summary)} runs, %); bold: the best on dev {metric}.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    summary_record = {
        "grid": grid,
        "eval_metric": metric,
        "best": summary[best]["name"],
        "points": summary,
    }
    study_record.write_summary_files(parent, "sweep", summary_record, table)
    return table


def run(
    config_path: str | Path | None,
    overrides: list[str],
    grid_items: list[str],
    resume: bool = False,
    overwrite: bool = False,
    options=None,
) -> tuple[Path, str]:
    """Run the grid (or launch it: `options`, a launchers.LaunchOptions); returns the parent
    folder and what to print."""
    options = options or launchers.LaunchOptions()
    options.check()
    grid = parse_grid(grid_items)
    base = load_config(config_path, overrides)
    parent = parent_folder(base, "sweep")
    points = [
        (
            point,
            point_name(point),
            [
                *overrides,
                *(f"{k}={v}" for k, v in point.items()),
                f"output_dir={parent / point_name(point)}",
            ],
        )
        for point in grid_points(grid)
    ]
    configs = [
        (name, load_config(config_path, items)) for _, name, items in points
    ]  # all validated first
    check_distinct_points(configs)
    if any(config.data.train_on_dev for _, config in configs):
        raise ConfigError(
            "config key 'data.train_on_dev': a sweep picks its best point on dev, which would "
            "then be training data; sweep with dev held out"
        )
    record = {
        "kind": "sweep",
        "config": str(config_path) if config_path else None,
        "overrides": list(overrides),
        "points": [
            {
                "name": name,
                "overrides": items,
                "run_dir": str(config.output_dir),
                "assignments": point,
            }
            for (point, name, items), (_, config) in zip(points, configs, strict=True)
        ],
        "grid": grid,
        "eval_metric": base.eval.metric,
    }
    done = f"sweep.json, sweep.md and one run folder per point: {parent}"
    return parent, run_study(
        parent, record, configs, options, resume, overwrite, write_summary, done
    )


def check_kept_points(configs: list[tuple[str, RunConfig]]) -> None:
    """A point finished earlier is kept, not rerun: only if the study still gives it the config it
    was trained with. A recipe or --config file edited between two starts (same path, so the same
    study) mixed points of the old and the new config in one mean ± std."""
    from emoscale.training.resuming import changed_key

    for name, config in configs:
        run_dir = Path(config.output_dir)
        if (run_dir / "metrics.json").is_file() and (run_dir / "config.yaml").is_file():
            changed = changed_key(run_dir, config)
            if changed:
                key, value, used = changed
                raise ConfigError(
                    f"point {name!r} finished earlier in {run_dir} with config key {key!r} "
                    f"{used!r}; the study now gives {value!r}. Pass --overwrite to redo every "
                    "point, or choose a new output_dir"
                )


def run_study(
    parent: Path,
    record: dict,
    configs: list[tuple[str, RunConfig]],
    options,
    resume: bool,
    overwrite: bool,
    summarize: Callable[[Path, dict], str],
    done: str,
) -> str:
    """A study (sweep or cv) once its points are validated: claim the parent folder, then launch
    the points (`options.launcher`) or train them here and summarise; returns what to print."""
    from accelerate import PartialState  # not at import: `emoscale --help` stays quick

    if not overwrite:
        study_record.refuse_another(parent, record)  # that message first: it names the cause
        check_kept_points(configs)
    state = PartialState()
    if state.is_main_process:
        record = study_record.claim(parent, record)
    state.wait_for_everyone()
    if options.launcher is not None:
        return launchers.execute(parent, record, options, overwrite)
    run_points(configs, resume, overwrite)
    return (summarize(parent, record) if state.is_main_process else "") + f"\n{done}"
