"""EmoDB validation (issue 5): leave-speakers-out UA/WA of a small speech encoder trained on a CPU.

    python benchmarks/emodb_validation.py --out runs/emodb-validation             # 10 folds
    python benchmarks/emodb_validation.py --folds 0,1 --epochs 4 --out runs/emodb-try
    python benchmarks/emodb_validation.py --method lora --out runs/emodb-lora      # product path only

The model: a random-init WavLM from emoscale.tiny.encoders (--hidden, --layers; the conv front end
is tiny_encoders' 4 x 32 channels, total stride 320), then the LoRA-MER audio branch (Conv1D +
attentive statistics pooling, classifier), audio only (`model.modalities=audio`: EmoDB's text is one
of ten fixed sentences and carries no emotion). Each fold is a run of `emoscale cv` (emoscale.studies.cv.run,
called in this process): EmoDB's folds of data/folds.py, one test speaker per fold by default,
whole dev speakers carved from the rest, the best epoch chosen on dev UA.

--method full (default, `model.audio_method=full`) trains the WHOLE encoder from its random weights
("from scratch"). --method lora / frozen train LoRA r=2 on q/v of the random encoder, or none of it
(pooling and classifier train in all three): those are NOT "trained from scratch".

Chance: UA 1/7 = 0.143; WA of always answering the largest class (anger) is about 0.24.
"""

from __future__ import annotations

import argparse
import json
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
DEFAULT_DATA = SHARED / "data" / "emodb"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"
CHANCE_UA = 1 / 7


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="EmoDB folder (holding wav/)")
    parser.add_argument("--out", required=True, help="cv parent folder (one run folder per fold)")
    parser.add_argument("--folds", help="comma-separated fold numbers (default: all)")
    parser.add_argument("--num-folds", type=int, default=10, help="speaker folds (10: one each)")
    parser.add_argument("--method", choices=("full", "lora", "frozen"), default="full")
    parser.add_argument("--hidden", type=int, default=64, help="encoder width")
    parser.add_argument("--layers", type=int, default=2, help="encoder transformer layers")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers decoding audio")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="the encoder is kept here")
    parser.add_argument("--json", help="write per-fold and mean ± std metrics here")
    parser.add_argument("--overwrite", action="store_true", help="retrain finished folds")
    return parser.parse_args(argv)


def random_encoder(args: argparse.Namespace) -> Path:
    from emoscale.tiny.encoders import make_tiny_speech_encoder

    folder = Path(args.cache_dir) / f"wavlm-random-{args.hidden}x{args.layers}"
    if not (folder / "config.json").is_file():
        make_tiny_speech_encoder(
            folder, "wavlm", hidden_size=args.hidden, num_layers=args.layers, num_heads=4
        )
    return folder


def overrides(args: argparse.Namespace, encoder: Path) -> list[str]:
    return [
        "model.family=fusion",
        "model.modalities=audio",
        f"model.audio_path={encoder}",
        f"model.audio_method={args.method}",
        "data.dataset=emodb",
        f"data.path={args.data}",
        f"data.num_folds={args.num_folds}",
        "data.max_seconds=2.0",  # every EmoDB clip is 2.0 s in this copy
        "fusion.dim=128",
        "fusion.classifier_hidden=128",
        "train.batch_size=16",
        f"train.lr={args.lr}",
        f"train.epochs={args.epochs}",
        "train.scheduler=cosine",
        "train.warmup_ratio=0.1",
        f"train.num_workers={args.workers}",
        "eval.metric=ua",
        f"output_dir={args.out}",
    ]


def trained_parts(args: argparse.Namespace) -> str:
    return {
        "full": "whole encoder (random init) + pooling + classifier",
        "lora": "LoRA r=2 on q/v of a random frozen encoder + pooling + classifier",
        "frozen": "pooling + classifier on a random frozen encoder",
    }[args.method]


def command(argv: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in [sys.executable, __file__, *argv])


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from emoscale.studies import cv

    encoder = random_encoder(args)
    keys = overrides(args, encoder)
    started = time.perf_counter()
    parent, table = cv.run(None, keys, folds=args.folds, overwrite=args.overwrite)
    seconds = time.perf_counter() - started
    summary = json.loads((parent / "cv.json").read_text())
    trainable = {
        fold["name"]: json.loads((Path(fold["run_dir"]) / "run.json").read_text()).get(
            "trainable_parameters"
        )
        for fold in summary["folds"]
    }
    mean, std = summary["mean"]["test"], summary["std"]["test"]
    lines = [
        table,
        f"Trained: {trained_parts(args)}; encoder WavLM {args.hidden} wide, {args.layers} layers,"
        f" random init ({encoder}); {args.epochs} epochs, AdamW lr {args.lr}, cosine, batch 16.",
        f"Test UA {mean['ua']:.3f} ± {std['ua']:.3f}, WA {mean['wa']:.3f} ± {std['wa']:.3f}"
        f" over {len(summary['folds'])} folds (chance UA {CHANCE_UA:.3f}); {seconds:.0f} s in this call"
        " (folds finished by an earlier call are read back, not retrained).",
        f"Command: {command(argv)}",
    ]
    lines.append("Same as: emoscale cv " + " ".join(shlex.quote(key) for key in keys))
    print("\n" + "\n".join(lines))
    result = {
        "benchmark": "emodb_validation",
        "method": args.method,
        "trained": trained_parts(args),
        "trainable_parameters": trainable,
        "overrides": keys,
        "command": command(argv),
        "seconds": seconds,
        "chance_ua": CHANCE_UA,
        "cv": summary,
        "table": table,
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
