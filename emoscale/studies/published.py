"""The papers' published numbers (emoscale/recipes/targets.yaml): every row of their tables.

    emoscale recipes                      # each recipe with its row's numbers, then the other rows
    emoscale report RUNS --targets        # every published row, our runs beside theirs

Each entry is one row of a paper's table for one dataset: the system as printed, its numbers in %
as printed, and the recipe that reproduces it, if emoscale has one (the papers' comparison systems,
e.g. TFR-Net or LoRA-MER's Table 3, have none). A recipe's target is the first entry naming it.
A researcher's own file in the same format (or the short form `recipe: {metric: value}`) replaces
the shipped one with `--targets FILE`; every entry is checked and a bad one named in one line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from emoscale.config.loading import ConfigLoader
from emoscale.errors import EmoscaleError
from emoscale.studies import recipes

TARGETS_FILE = recipes.TARGETS_FILE
METRICS = ("accuracy", "macro_f1", "weighted_f1", "ua", "wa")
TEXT_KEYS = ("source", "dataset", "system", "recipe", "note")
NO_RECIPE = "published, no emoscale recipe"


class Printed(float):
    """A published number that remembers how the paper printed it: 85.20 stays "85.20"."""

    def __new__(cls, value: float, text: str) -> Printed:
        number = super().__new__(cls, value)
        number.text = text
        return number


class TargetsLoader(ConfigLoader):
    """The config loader (YAML 1.2 booleans) whose floats keep their printed digits."""


def _printed_float(loader: yaml.Loader, node: yaml.ScalarNode) -> Printed:
    return Printed(loader.construct_yaml_float(node), node.value)


TargetsLoader.add_constructor("tag:yaml.org,2002:float", _printed_float)


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper's table for one dataset."""

    source: str  # "LLM paper, Table 2"
    dataset: str  # emoscale's name for the dataset column: "MOSI-2", "IEMOCAP"
    system: str  # the row as printed: "ChatGLM2 (LoRA)", "TFR-Net (2021) [15]"
    family: str  # the emoscale model family the row compares with: prompt_lm or fusion
    values: dict[str, float | None] = field(default_factory=dict)  # metric -> % or None ("-")
    recipe: str | None = None  # None: published, no emoscale recipe
    note: str = ""


def number_text(value: float | None) -> str:
    """A published number as the paper prints it; "–" where it prints none."""
    if value is None:
        return "–"
    return getattr(value, "text", f"{value:.2f}")


def values_text(row: PaperRow | None) -> str:
    if row is None:
        return "–"
    known = [
        f"{key} {number_text(value)}" for key, value in row.values.items() if value is not None
    ]
    return f"{', '.join(known) or 'no numbers'} ({row.source})"


def row_text(row: PaperRow) -> str:
    return row.system + (f" [{row.note}]" if row.note else "")


def _read(file: Path) -> object:
    try:
        return yaml.load(file.read_text(encoding="utf-8"), Loader=TargetsLoader)  # noqa: S506
    except OSError as error:
        raise EmoscaleError(f"{file}: cannot read the targets file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise EmoscaleError(f"{file}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", error)
        raise EmoscaleError(f"{file}{line}: not valid YAML ({problem})") from None


def _recipe_rows() -> dict[str, recipes.Row]:
    return {name: recipes.table_row(recipes.load(name)) for name in recipes.names()}


def _check_value(where: str, key: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 1 < value <= 100  # 0.915 is a fraction: the papers print 91.5
    ):
        raise EmoscaleError(
            f"{where}: {key} must be a number in % (above 1, at most 100) as the paper "
            f"prints it, or null; got {value!r}"
        )


def _entry(where: str, entry: object, known: dict[str, recipes.Row]) -> PaperRow:
    if not isinstance(entry, dict):
        raise EmoscaleError(f"{where}: expected {{source, dataset, system, recipe, <metric>: %}}")
    for key, value in entry.items():
        if key not in METRICS + TEXT_KEYS:
            raise EmoscaleError(
                f"{where}: unknown key {key!r} (one of {', '.join(METRICS)}, "
                f"{', '.join(TEXT_KEYS)})"
            )
        if key in METRICS:
            _check_value(where, key, value)
        elif not isinstance(value, str) or not value.strip():
            raise EmoscaleError(f"{where}: {key} must be text; got {value!r}")
    values = {key: entry[key] for key in METRICS if key in entry}
    if not values:
        raise EmoscaleError(f"{where}: no metric (one of {', '.join(METRICS)})")
    recipe = entry.get("recipe")
    if recipe is not None and recipe not in known:
        close = difflib.get_close_matches(recipe, list(known), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EmoscaleError(
            f"{where}: recipe {recipe!r} is not shipped{hint}; `emoscale recipes` lists them"
        )
    if recipe is not None:
        row = known[recipe]
        dataset, family = entry.get("dataset", row.dataset), row.family
        if dataset != row.dataset:
            raise EmoscaleError(
                f"{where}: dataset {dataset!r} is not recipe {recipe}'s ({row.dataset!r})"
            )
    else:
        families = {row.dataset: row.family for row in known.values()}
        missing = [key for key in ("source", "dataset", "system") if key not in entry]
        if missing:
            raise EmoscaleError(f"{where}: a row without a recipe needs {', '.join(missing)}")
        dataset = entry["dataset"]
        if dataset not in families:
            raise EmoscaleError(
                f"{where}: dataset {dataset!r} is no recipe's (one of {', '.join(sorted(families))})"
            )
        family = families[dataset]
    return PaperRow(
        source=entry.get("source", "no source"),
        dataset=dataset,
        system=entry.get("system", recipe or ""),
        family=family,
        values=values,
        recipe=recipe,
        note=entry.get("note", ""),
    )


def read_targets(file: str | Path | None = None) -> list[PaperRow]:
    """Every published row of the targets file (the shipped one by default), checked entry by entry."""
    file = Path(file or TARGETS_FILE)
    loaded = _read(file)
    if loaded is None:
        raise EmoscaleError(f"{file}: the file is empty (expected a list of the papers' rows)")
    if isinstance(loaded, dict):  # the short form: recipe name -> {metric: value, source: text}
        loaded = [
            {"recipe": name, **target} if isinstance(target, dict) else target
            for name, target in loaded.items()
        ]
    if not isinstance(loaded, list):
        raise EmoscaleError(
            f"{file}: expected a list of the papers' rows (or recipe: {{metric: %}})"
        )
    known = _recipe_rows()
    rows, seen = [], set()
    for index, entry in enumerate(loaded, start=1):
        what = entry.get("system") or entry.get("recipe") if isinstance(entry, dict) else None
        where = f"{file}: entry {index}" + (f" ({what})" if isinstance(what, str) else "")
        row = _entry(where, entry, known)
        key = (row.source, row.dataset, row.system)
        if key in seen:
            raise EmoscaleError(
                f"{where}: {row.source}, {row.dataset}, {row.system} is listed twice"
            )
        seen.add(key)
        rows.append(row)
    return rows


def recipe_targets(rows: list[PaperRow]) -> dict[str, PaperRow]:
    """Recipe name -> its target: the first published row naming it."""
    found: dict[str, PaperRow] = {}
    for row in rows:
        if row.recipe:
            found.setdefault(row.recipe, row)
    return found


def listing() -> tuple[list[dict], list[dict]]:
    """`emoscale recipes`: one dict per recipe (name, dataset, method, paper row, its numbers), then
    every published row that is not a recipe's target (no recipe, or a recipe's second row)."""
    rows = read_targets()
    targets = recipe_targets(rows)
    known = _recipe_rows()
    # The papers' order: a recipe where its row first appears in targets.yaml, then the rest.
    position = {row.recipe: index for index, row in reversed(list(enumerate(rows)))}
    recipe_lines = []
    order = lambda name: (position.get(name, len(rows)), recipes.row_order(known[name]))  # noqa: E731
    for name in sorted(known, key=order):
        target = targets.get(name)
        recipe_lines.append(
            {
                "name": name,
                "dataset": known[name].dataset,
                "method": known[name].method,
                "paper row": row_text(target) if target else "–",
                "paper": values_text(target),
            }
        )
    others = [
        {
            "recipe": row.recipe or NO_RECIPE,
            "dataset": row.dataset,
            "paper row": row_text(row),
            "paper": values_text(row),
        }
        for row in rows
        if not row.recipe or targets[row.recipe] is not row
    ]
    return recipe_lines, others


# --- the papers' tables, as `emoscale report --targets` prints them --------------------------------

METRIC_NAMES = {
    "accuracy": "Acc",
    "macro_f1": "macro-F1",
    "weighted_f1": "weighted-F1",
    "ua": "UA",
    "wa": "WA",
}


def tables_markdown(rows: list[PaperRow], ours: dict[str, dict[str, str]] | None = None) -> str:
    """Every published row, one markdown table per paper table in the file's order; `ours` (recipe
    -> metric -> our mean ± std as text) adds our number after each paper number where we have it."""
    ours = ours or {}
    sources = list(dict.fromkeys(row.source for row in rows))
    parts = []
    for source in sources:
        chosen = [row for row in rows if row.source == source]
        metrics = [m for m in METRICS if any(m in row.values for row in chosen)]
        with_ours = any(row.recipe in ours for row in chosen)
        header = ["dataset", "system (as printed)", "emoscale recipe"]
        for metric in metrics:
            header += [METRIC_NAMES[metric]] + (
                [f"{METRIC_NAMES[metric]} (ours)"] if with_ours else []
            )
        lines = [f"#### {source}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in chosen:
            cells = [row.dataset, row_text(row), f"`{row.recipe}`" if row.recipe else NO_RECIPE]
            for metric in metrics:
                cells.append(number_text(row.values.get(metric)) if metric in row.values else "")
                if with_ours:
                    cells.append(ours.get(row.recipe, {}).get(metric, "–"))
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_csv(rows: list[PaperRow], path: Path) -> None:
    """papers.csv: one line per published row, the numbers as printed (empty where none)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "dataset", "system", "recipe", *METRICS, "note"])
        for row in rows:
            numbers = [
                number_text(row.values[m]) if row.values.get(m) is not None else "" for m in METRICS
            ]
            writer.writerow(
                [row.source, row.dataset, row.system, row.recipe or "", *numbers, row.note]
            )
