"""The built-in demo: a tiny LLM learns a small three-way sentiment task with LoRA, offline, on CPU.

    accelerate launch emoscale/train.py          # no arguments: this demo

The data is generated here from templates (subjects x verbs x sentiment words), so it ships with
emoscale under emoscale's licence (Apache-2.0) and needs no download. The label depends only on the
sentiment word, so a model that learned anything scores far above chance (1/3).
"""

from __future__ import annotations

import csv
import fcntl
import os
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SUBJECTS = [
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the soundtrack",
    "the ending",
    "the cast",
    "the script",
    "the dialogue",
    "the director's new work",
    "the sequel",
    "the first half",
]
VERBS = ["was", "is", "felt", "seemed", "looked", "turned out"]
ADVERBS = ["", "really ", "quite ", "truly ", "somewhat "]
WORDS = {
    "positive": [
        "wonderful",
        "brilliant",
        "moving",
        "delightful",
        "superb",
        "charming",
        "gripping",
        "lovely",
    ],
    "negative": ["awful", "boring", "dull", "painful", "terrible", "clumsy", "tedious", "dreadful"],
    "neutral": [
        "two hours long",
        "in english",
        "shot in paris",
        "released in may",
        "in colour",
        "about a family",
        "based on a novel",
        "set in a small town",
    ],
}
LABELS = [
    "positive",
    "negative",
    "neutral",
]  # the LLM paper's order: "Positive, Negative or Neutral"


def sentences(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(LABELS)
        adverb = "" if label == "neutral" else rng.choice(ADVERBS)
        text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {adverb}{rng.choice(WORDS[label])}."
        rows.append((text[0].upper() + text[1:], label))
    return rows


def write_corpus(folder: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """train.csv / dev.csv / test.csv with `text,label` columns."""
    sizes = sizes or {"train": 480, "dev": 96, "test": 96}
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(sizes.items()):
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(sentences(count, seed + offset))
    return folder


def cache_dir() -> Path:
    return Path(os.environ.get("EMOSCALE_CACHE", Path.home() / ".cache" / "emoscale"))


@contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    """One writer at a time in a cache folder: parallel study points (issue 16) and the ranks of
    one run may all find it empty at once."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_once(folder: Path, write: Callable[[Path], object]) -> None:
    """write(temporary folder), then a rename: a folder in the cache is whole or absent, also
    after a kill. Call under cache_lock."""
    if folder.is_dir():
        return
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    write(temporary)
    os.replace(temporary, folder)


def tokenizer_texts() -> list[str]:
    """What the tiny models' tokenizers are trained on: the sentences alone and inside the paper's
    prompt, so that a sentence's words after "...Neutral:" have their mid-text forms ("ĠThe"), as a
    pretrained BPE has. Prompts are tokenised as continuations (models/prompt_tokens.py); with only
    200 of 2,000 sentences in prompt form, a sentence's first word fell apart into byte pieces, and
    the LoRA demo reached dev accuracy 0.69-0.82 (six seeds) instead of 0.91-0.98 (four)."""
    texts = [text for text, _ in sentences(2000, seed=99)]
    return texts + [
        f"Classify the sentiment of the sentence to Positive, Negative or Neutral: {text}"
        for text in texts
    ]


def prepare(root: Path | None = None) -> tuple[Path, Path]:
    """Write the demo corpus and tiny model once (reused later); returns (data folder, model folder)."""
    from emoscale.output_folder import check_creatable
    from emoscale.tiny.lm import make_tiny

    root = root or cache_dir() / "demo"
    if not (root / "data").is_dir() or not (root / "tiny-llama-v2").is_dir():  # to be written
        # An unwritable HOME (or EMOSCALE_CACHE) was mkdir's traceback.
        check_creatable(root, "the demo's cache folder (EMOSCALE_CACHE or ~/.cache/emoscale)")
    # "-v2": the tokenizer's training texts changed (tokenizer_texts); an older cached model is not reused.
    data, model = root / "data", root / "tiny-llama-v2"
    texts = tokenizer_texts()
    with cache_lock(root):
        write_once(data, write_corpus)
        # LoRA on a frozen random model: wide weights, so its frozen lm_head separates tokens.
        write_once(
            model,
            lambda folder: make_tiny(
                folder, texts, arch="llama", vocab_size=600, initializer_range=0.2
            ),
        )
    return data, model


def overrides(data: Path, model: Path) -> list[str]:
    """The demo run: LoRA on every linear layer (a random tiny base has little to steer by q/v alone)."""
    return [
        f"model.path={model}",
        "model.method=lora",
        "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
        "lora.r=8",
        "data.dataset=csv",
        f"data.path={data}",
        f"data.labels=[{','.join(LABELS)}]",
        "train.batch_size=16",
        "train.lr=3e-3",
        "train.epochs=6",
        "train.warmup_ratio=0.05",
        "eval.metric=accuracy",
    ]
