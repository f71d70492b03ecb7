"""The shipped recipes: one YAML run config per row of the papers' tables, in emoscale/recipes/.

    emoscale recipes                                      # name, dataset, method, the paper's target
    emoscale recipes sst2_lora                            # print one
    emoscale train --recipe sst2_lora model.path=... data.path=...

A recipe is a plain run config (config.py validates it like any other); the command line's
`key=value` pairs override it. The papers' published numbers live beside the recipes in
recipes/targets.yaml, because a run config admits no key the schema does not know. `table_row`
names the row of the papers' tables a config belongs to: `emoscale report` groups runs by it and
finds the paper's number for the row through the recipe with the same row.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import NamedTuple

import yaml

from emoscale.config import RunConfig, load_config, read_yaml
from emoscale.errors import EmoscaleError

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"  # the shipped YAML files
TARGETS_FILE = RECIPE_DIR / "targets.yaml"

# The papers' names and order: the LLM paper's corpora first, then the speech corpora.
DATASET_LABELS = {
    "sst2": "SST-2",
    "sst5": "SST-5",
    "mosi": "MOSI",
    "chsims": "CH-SIMS",
    "mastodon": "Mastodon",
    "friends": "Friends",
    "m3ed": "M3ED",
    "meld": "MELD",
    "iemocap": "IEMOCAP",
    "emodb": "EmoDB",
}
METHOD_LABELS = {
    "none": "zero-shot",
    "prompt_tuning": "prompt tuning",
    "p_tuning": "P-tuning",
    "ptuning_v2": "P-Tuning v2",
    "lora": "LoRA",
    "full": "full fine-tuning",
}
# model_type in a model folder's config.json (or a word in the folder's name) -> the papers' name.
# xlm-roberta before roberta before bert: the first that matches wins.
ENCODER_LABELS = {
    "wavlm": "WavLM",
    "hubert": "HuBERT",
    "wav2vec2": "wav2vec2",
    "xlm-roberta": "XLM-R",
    "roberta": "RoBERTa",
    "bert": "BERT",
}


class Row(NamedTuple):
    """A row of the papers' tables: which model family, corpus (with its labelling) and method."""

    family: str
    dataset: str
    method: str


def names() -> list[str]:
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml") if path != TARGETS_FILE)


def path(name: str) -> Path:
    """The recipe file called `name`; an unknown name fails with the closest known ones."""
    file = RECIPE_DIR / f"{name}.yaml"
    if name in names():
        return file
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise EmoscaleError(f"unknown recipe {name!r}{hint}; `emoscale recipes` lists them")


def load(name: str, overrides: list[str] = ()) -> RunConfig:
    return load_config(path(name), list(overrides))


TARGET_METRICS = ("accuracy", "macro_f1", "weighted_f1", "ua", "wa")


def targets(file: str | Path | None = None) -> dict[str, dict]:
    """recipe name -> {metric: value in % or None, "source": where the number comes from}, from
    the shipped targets.yaml or a researcher's own copy in the same format, checked entry by entry."""
    file = Path(file or TARGETS_FILE)
    try:
        loaded = read_yaml(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise EmoscaleError(f"{file}: cannot read the targets file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise EmoscaleError(f"{file}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", error)
        raise EmoscaleError(f"{file}{line}: not valid YAML ({problem})") from None
    if loaded is None:
        raise EmoscaleError(
            f"{file}: the file is empty (expected recipe name -> {{metric: value}})"
        )
    if not isinstance(loaded, dict):
        raise EmoscaleError(f"{file}: expected a mapping of recipe name -> {{metric: value}}")
    for name, target in loaded.items():
        where = f"{file}: {name}"
        if name not in names():
            close = difflib.get_close_matches(str(name), names(), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EmoscaleError(
                f"{where}: not a shipped recipe{hint}; `emoscale recipes` lists them"
            )
        if not isinstance(target, dict):
            raise EmoscaleError(f"{where}: expected {{metric: value in %, source: text}}")
        for key, value in target.items():
            if key == "source":
                continue
            if key not in TARGET_METRICS:
                raise EmoscaleError(
                    f"{where}: unknown metric {key!r} (one of {', '.join(TARGET_METRICS)}, source)"
                )
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 1 < value <= 100  # 0.915 is a fraction: the papers print 91.5
            ):
                raise EmoscaleError(
                    f"{where}: {key} must be a number in % (above 1, at most 100) as the paper "
                    f"prints it, or null; got {value!r}"
                )
    return loaded


def encoder_label(folder: str | None) -> str:
    if not folder:
        return "?"
    try:
        model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
        model_type = ""  # a placeholder path in a recipe, or a run made on another machine
    name = Path(folder).name.lower()
    for key, label in ENCODER_LABELS.items():
        if model_type == key or key in name:
            return label
    return Path(folder).name


def dataset_label(data: dict) -> str:
    """'SST-2', 'MOSI-3' (data.target 3class), 'MELD (sentiment)'; a generic corpus by its folder."""
    from emoscale.data.registry import TARGETS

    dataset = data["dataset"]
    label = DATASET_LABELS.get(dataset)
    if label is None:
        label = Path(data["path"]).name if data.get("path") else dataset
    target = data.get("target") or TARGETS.get(dataset, (None,))[0]
    if target:
        classes = re.fullmatch(r"(\d+)class", target)
        label += f"-{classes[1]}" if classes else f" ({target})"
    return label


def method_label(config: dict) -> str:
    model = config["model"]
    if model["family"] != "fusion":
        label = METHOD_LABELS.get(model["method"], model["method"])
        bits = (
            "8-bit" if model.get("load_in_8bit") else "4-bit" if model.get("load_in_4bit") else ""
        )
        return f"{label} ({bits})" if bits else label
    parts = []
    if model["modalities"] in ("audio", "both"):
        how = {"lora": "LoRA", "full": "fully trained"}.get(model["audio_method"], "frozen")
        weighted = ", weighted layers" if model["audio_layers"] == "weighted" else ""
        parts.append(f"{encoder_label(model['audio_path'])} {how}{weighted}")
    if model["modalities"] in ("text", "both"):
        parts.append(f"{encoder_label(model['text_path'])} frozen")
    label = " + ".join(parts)
    if model["modalities"] == "both":
        weight = config["fusion"]["mine_weight"]
        if weight is None:  # the fusion family's default (imported only then: it loads torch)
            from emoscale.models.speech_text import PAPER_MINE_WEIGHT

            weight = PAPER_MINE_WEIGHT
        label += f", λ={weight:g}"
    return label


def table_row(config: dict | RunConfig) -> Row:
    """The row of the papers' tables for a run config: a RunConfig, or a run's config.yaml as read
    (keys a run made by an older emoscale lacks take today's defaults)."""
    full = RunConfig().model_dump()
    raw = config.model_dump() if isinstance(config, RunConfig) else config
    for section, values in raw.items():
        both_sections = isinstance(values, dict) and isinstance(full.get(section), dict)
        full[section] = {**full[section], **values} if both_sections else values
    return Row(full["model"]["family"], dataset_label(full["data"]), method_label(full))


def row_order(row: Row) -> tuple:
    """The papers' order: prompt LM before fusion, corpora and methods as the papers list them."""
    families, datasets = ["prompt_lm", "fusion"], list(DATASET_LABELS.values())
    methods = list(METHOD_LABELS.values())
    corpus = row.dataset.split(" (")[0].rsplit("-", 1)[0]  # MOSI-3 sorts with MOSI
    corpus = row.dataset if row.dataset in datasets else corpus
    return (
        families.index(row.family) if row.family in families else len(families),
        datasets.index(corpus) if corpus in datasets else len(datasets),
        row.dataset,
        methods.index(row.method) if row.method in methods else len(methods),
        row.method,
    )


def paper_targets(file: str | Path | None = None) -> dict[Row, dict]:
    """Row -> the paper's numbers for it ({metric: value or None, "source": ...})."""
    found = {}
    for name, target in targets(file).items():
        found.setdefault(table_row(load(name)), {**target, "recipe": name})
    return found


def target_text(target: dict | None) -> str:
    if not target:
        return "–"
    values = [(key, value) for key, value in target.items() if key not in ("source", "recipe")]
    known = ", ".join(f"{key} {value:.2f}" for key, value in values if value is not None)
    missing = ", ".join(key for key, value in values if value is None)
    text = known + (
        f"; {missing}: null" if missing and known else f"{missing}: null" if missing else ""
    )
    return f"{text} ({target.get('source', 'no source')})"


def listing() -> list[dict]:
    """One dict per recipe: name, dataset, method and the paper's target as text."""
    all_targets = targets()
    rows = []
    for name in sorted(names(), key=lambda name: row_order(table_row(load(name)))):
        row = table_row(load(name))
        rows.append(
            {
                "name": name,
                "dataset": row.dataset,
                "method": row.method,
                "target": target_text(all_targets.get(name)),
            }
        )
    return rows
