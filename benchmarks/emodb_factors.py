"""EmoDB one-factor experiments (issue 15, item 3): which of emoscale's choices costs a tiny
from-scratch encoder its learning.

    nice -n 10 python benchmarks/emodb_factors.py --folds 0,1,2,3,4 --epochs 8 \
        --json runs/bench/emodb_factors.json
    python benchmarks/emodb_factors.py --quick          # seconds, synthetic clips

Every arm trains emoscale's own fusion model (models/speech_text.SpeechTextModel, built from config
keys: the same encoder, pooling, classifier and dropout as `emoscale cv`) with the trainer's
optimiser, schedule and clipping, on clips decoded once by emoscale's AudioReader (so the arms cost
only their training). One thing changes per arm, relative to `--base-keys`:

- config keys (`warmup0`: train.warmup_ratio=0, `noclip`: train.max_grad_norm unset,
  `dropout0`: fusion.dropout=0, `noaug`: fusion.encoder_augmentation=never, `meanstd`:
  fusion.pooling=mean_std ...), and
- `linear_head`: one linear layer on f instead of the two-layer classifier (no config key);
- `asp_zero_init`: the attention scorer's last layer starts at zero (equal frame weights);
- `alltrain`: the dev speaker(s) join the training split (more clips, one more speaker).

Dev UA and test UA are measured after every epoch, so each arm gives both selections: test UA at
the best dev epoch (what the trainer reports) and after the last epoch (what a plain loop reports).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from bench_files import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emodb_side_by_side import (  # noqa: E402
    DEFAULT_DATA,
    model_and_schedule_keys,
    synthetic_emodb,
)

CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"
ARMS = {
    "emoscale": [],
    "warmup0": ["train.warmup_ratio=0"],
    "noclip": ["train.max_grad_norm=null"],
    "dropout0": ["fusion.dropout=0"],
    "noaug": ["fusion.encoder_augmentation=never"],
    "meanstd": ["fusion.pooling=mean_std"],
    "linear_head": [],
    "asp_zero_init": [],
    # the dev speaker(s) trained on too, as a loop without dev selection can (dev UA is then no
    # longer held out; only test UA counts)
    "alltrain": [],
    # everything the minimal loop of emodb_side_by_side.py does differently, at once
    "minimal": ["train.warmup_ratio=0", "train.max_grad_norm=null"],
}


class PlainMeanStd(torch.nn.Module):
    """The minimal loop's pooling: [mean, std] of the encoder's frames, no layers."""

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([features.mean(1), features.std(1)], dim=-1)  # equal-length clips


def decoded_splits(config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """split -> (waves [N, samples], labels [N]) read by emoscale's own AudioReader."""
    from emoscale.data import load_corpus
    from emoscale.models.speech_text import build_speech_text_family

    corpus = load_corpus(config.data)
    family = build_speech_text_family(config, corpus)
    out = {}
    for split in ("train", "dev", "test"):
        rows = family._rows(corpus.split(split), split)
        waves = [family.reader.read(row["audio"]) for row in rows]
        values = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        out[split] = (values, torch.tensor([row["label"] for row in rows]))
    return out


def ua(predicted: torch.Tensor, gold: torch.Tensor) -> float:
    recalls = [(predicted[gold == c] == c).float().mean() for c in gold.unique()]
    return float(torch.stack(recalls).mean())


def train_arm(config, arm: str, data: dict, seed: int) -> dict:
    """One fold, one arm: per-epoch dev and test UA."""
    from transformers import get_scheduler

    from emoscale.models.speech_encoder import load_speech_encoder
    from emoscale.models.speech_text import SpeechTextModel

    torch.manual_seed(seed)
    classes = 7
    model = SpeechTextModel(load_speech_encoder(config), None, classes, config)
    if arm == "linear_head":
        model.classifier = torch.nn.Linear(config.fusion.dim, classes)
    if arm == "minimal":
        model.audio_pool = PlainMeanStd()
        model.classifier = torch.nn.Linear(2 * model.speech.hidden_size, classes)
    if arm == "asp_zero_init":  # attention scores start equal: ASP starts as mean + std pooling
        torch.nn.init.zeros_(model.audio_pool.attention[-1].weight)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.train.lr, weight_decay=0.0)
    train_x, train_y = data["train"]
    if arm == "alltrain":
        train_x, train_y = (
            torch.cat(pair) for pair in zip(data["train"], data["dev"], strict=True)
        )
    batch = config.train.batch_size
    steps = config.train.epochs * math.ceil(len(train_y) / batch)
    scheduler = get_scheduler(
        config.train.scheduler,
        optimizer,
        num_warmup_steps=int(config.train.warmup_ratio * steps),
        num_training_steps=steps,
    )
    generator = torch.Generator().manual_seed(seed)

    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            parts = [model(v, torch.ones_like(v, dtype=torch.long))[0] for v in x.split(32)]
        return torch.cat(parts).argmax(-1)

    history = []
    for _ in range(config.train.epochs):
        model.train()
        for rows in torch.randperm(len(train_y), generator=generator).split(batch):
            x = train_x[rows]
            logits, _ = model(x, torch.ones_like(x, dtype=torch.long))
            loss = torch.nn.functional.cross_entropy(logits, train_y[rows])
            optimizer.zero_grad()
            loss.backward()
            if config.train.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, config.train.max_grad_norm)
            optimizer.step()
            scheduler.step()
        history.append(
            {split: ua(predict(data[split][0]), data[split][1]) for split in ("dev", "test")}
        )
    best = max(range(len(history)), key=lambda e: (history[e]["dev"], e))
    return {
        "history": history,
        "best_epoch": best + 1,
        "test_at_best_dev": history[best]["test"],
        "test_last": history[-1]["test"],
    }


DECODED: dict = {}  # (fold, base keys) -> decoded splits, per process


def run_task(base: list[str], fold: str, arm: str, seed: int) -> dict:
    """One arm on one fold (in a worker process with --jobs > 1); prints its result at once."""
    from emoscale.config import load_config

    torch.set_num_threads(1)
    key = (fold, tuple(base))
    if key not in DECODED:
        DECODED.clear()
        DECODED[key] = decoded_splits(load_config(overrides=[*base, f"data.fold={fold}"]))
    config = load_config(overrides=[*base, *ARMS[arm], f"data.fold={fold}"])
    started = time.perf_counter()
    outcome = train_arm(config, arm, DECODED[key], seed)
    outcome["seconds"] = time.perf_counter() - started
    shown = {k: v for k, v in outcome.items() if k != "history"}
    print(arm, fold, shown, flush=True)
    return outcome


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--base-keys", nargs="*", default=[], help="keys under every arm")
    parser.add_argument("--quick", action="store_true", help="synthetic clips, 2 epochs, 1 fold")
    parser.add_argument("--json", help="write every arm's per-fold, per-epoch UA here")
    parser.add_argument("--jobs", type=int, default=1, help="(fold, arm) runs in parallel")
    parser.add_argument("--cache-dir", default=str(CACHE), help="the random encoder is kept here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    from emoscale.tiny.encoders import make_tiny_speech_encoder

    hidden, layers = (64, 2) if not args.quick else (16, 1)
    if args.quick:
        args.data = str(synthetic_emodb(Path(args.cache_dir) / "quick-emodb"))
        args.folds, args.epochs = "0", 2
        args.arms = "emoscale,meanstd"
    encoder = Path(args.cache_dir) / f"wavlm-random-{hidden}x{layers}"
    if not (encoder / "config.json").is_file():
        make_tiny_speech_encoder(encoder, "wavlm", hidden, layers, num_heads=4)
    base = model_and_schedule_keys(args.data, encoder, args.lr, args.epochs) + args.base_keys
    results: dict[str, dict] = {}
    started = time.perf_counter()
    tasks = [(fold, arm) for fold in args.folds.split(",") for arm in args.arms.split(",")]
    if args.jobs > 1:  # each (fold, arm) in its own process, decoding its fold itself
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            count = len(tasks)
            runs = pool.map(
                run_task, [base] * count, *zip(*tasks, strict=True), [args.seed] * count
            )
            outcomes = list(runs)
    else:
        outcomes = [run_task(base, fold, arm, args.seed) for fold, arm in tasks]
    for (fold, arm), outcome in zip(tasks, outcomes, strict=True):
        results.setdefault(arm, {})[f"fold{fold}"] = outcome
    lines = [
        "| arm | test UA, best dev epoch | test UA, last epoch | best epochs |",
        "|---|---|---|---|",
    ]
    summary = {}
    for arm, folds in results.items():
        at_best = sum(f["test_at_best_dev"] for f in folds.values()) / len(folds)
        last = sum(f["test_last"] for f in folds.values()) / len(folds)
        epochs = ",".join(str(f["best_epoch"]) for f in folds.values())
        summary[arm] = {"test_at_best_dev": at_best, "test_last": last}
        lines.append(f"| {arm} | {at_best:.3f} | {last:.3f} | {epochs} |")
    seconds = time.perf_counter() - started
    print("\n".join(lines) + f"\n{seconds:.0f} s; folds {args.folds}, {args.epochs} epochs")
    result = {
        "benchmark": "emodb_factors",
        "table": "\n".join(lines),
        "summary": summary,
        "results": results,
        "seconds": seconds,
        "argv": argv,
        "base_keys": base,
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
