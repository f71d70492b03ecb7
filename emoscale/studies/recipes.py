"""The shipped recipes: one YAML run config per row of the papers' tables, in emoscale/recipes/.

    emoscale recipes                                      # name, dataset, method, the paper's target
    emoscale recipes sst2_lora                            # print one
    emoscale train --recipe sst2_lora model.path=... data.path=...

A recipe is a plain run config (config.py validates it like any other); the command line's
`key=value` pairs override it. The papers' published numbers live beside the recipes in
recipes/targets.yaml (read by published.py), because a run config admits no key the schema does
not know. `table_row` names the row of the papers' tables a config belongs to: `emoscale report`
groups runs by it and finds the paper's number for the row through the recipe with the same row.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import NamedTuple

from emoscale.config import RunConfig, load_config
from emoscale.errors import EmoscaleError

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"  # the shipped YAML files
TARGETS_FILE = RECIPE_DIR / "targets.yaml"
# Settings that serve small real models (e.g. SmolLM2-135M-Instruct), not rows of the papers'
# tables: no target, and `names()` (the paper rows) leaves them out (issue 14).
SMALL_MODEL_DIR = RECIPE_DIR / "small_models"

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
    """The paper recipes: one per row of the papers' tables."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml") if path != TARGETS_FILE)


def small_model_names() -> list[str]:
    """The recipes for small real models (recipes/small_models/)."""
    return sorted(path.stem for path in SMALL_MODEL_DIR.glob("*.yaml"))


def path(name: str) -> Path:
    """The recipe file called `name`; an unknown name fails with the closest known ones."""
    for folder, known in ((RECIPE_DIR, names()), (SMALL_MODEL_DIR, small_model_names())):
        if name in known:
            return folder / f"{name}.yaml"
    close = difflib.get_close_matches(name, names() + small_model_names(), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise EmoscaleError(f"unknown recipe {name!r}{hint}; `emoscale recipes` lists them")


def load(name: str, overrides: list[str] = ()) -> RunConfig:
    return load_config(path(name), list(overrides))


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
    # a class-weighted loss is no paper's: its runs are not averaged with the plain ones
    balanced = ", class-balanced" if config["train"].get("class_weights") == "balanced" else ""
    return _method_label(config) + balanced


def _method_label(config: dict) -> str:
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
