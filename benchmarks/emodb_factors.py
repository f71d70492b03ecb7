"""EmoDB one-factor experiments (issue 15, item 3): which of emoscale's choices costs a tiny
from-scratch encoder its learning.

    nice -n 5 python benchmarks/emodb_factors.py --folds 0,4 --epochs 6 --seeds 42,43,44 \
        --jobs 2 --arms emoscale,minimal,noaug,group --json runs/bench/emodb_factors.json
    python benchmarks/emodb_factors.py --quick          # seconds, synthetic clips

Every arm trains emoscale's own fusion model (models/speech_text.SpeechTextModel, built from config
keys: the same encoder, pooling, classifier and dropout as `emoscale cv`) with the trainer's
optimiser, schedule and clipping, on clips decoded once by emoscale's AudioReader (so the arms cost
only their training). One thing changes per arm, relative to `--base-keys`:

- config keys (`warmup0`: train.warmup_ratio=0, `noclip`: train.max_grad_norm unset,
  `dropout0`: fusion.dropout=0, `noaug`: fusion.encoder_augmentation=never, `meanstd`:
  fusion.pooling=mean_std ...), and
- `linear_head`: one linear layer on f instead of the two-layer classifier
  (fusion.classifier_layers=1); `plain_pool`: f = [mean, std] of the encoder's frames, no Conv1D
  and no projection (fusion.pooling=mean_std, fusion.pooling_layers=false);
- `asp_zero_init`: the attention scorer's last layer starts at zero (equal frame weights);
- `group`, `rawwave`: the encoder folder differs (GroupNorm front end; no per-clip scaling).

The dev speaker trains too, as in the protocol (`data.train_on_dev=true`); `--hold-out-dev` keeps
it out. `--seeds 42,43,44` repeats every (fold, arm) with other training seeds (initialisation of
the heads, batch order, dropout; the encoder's random weights stay those of its folder), and the
table gives mean ± std over every (fold, seed) run.

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
    encoder_folder,
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
    "weighted": ["model.audio_layers=weighted"],
    "lr3e-3": ["train.lr=0.003"],
    "lr5e-4": ["train.lr=0.0005"],
    "batch8": ["train.batch_size=8"],
    "linear_head": ["fusion.classifier_layers=1"],
    "plain_pool": ["fusion.pooling=mean_std", "fusion.pooling_layers=false"],
    "asp_zero_init": [],
    # the encoder folder differs (emoscale.tiny.encoders' options; the same shape, 64 x 2):
    "group": [],  # GroupNorm over time after the first conv (the base models' front end)
    "rawwave": [],  # the extractor does not scale each clip to zero mean and unit variance
    # everything the minimal loop of emodb_side_by_side.py does differently, at once
    "minimal": [
        "fusion.pooling=mean_std",
        "fusion.pooling_layers=false",
        "fusion.classifier_layers=1",
        "fusion.dropout=0",
        "train.warmup_ratio=0",
        "train.max_grad_norm=null",
    ],
}
ENCODER_OPTIONS = {
    "group": {"front_end_norm": "group"},
    "rawwave": {"normalize_waveform": False},
}


def arm_encoder(cache_dir: str | Path, hidden: int, layers: int, arm: str = "") -> Path:
    """The arm's random encoder: the protocol's, or its ENCODER_OPTIONS variant."""
    options = {k: v for part in arm.split("+") for k, v in ENCODER_OPTIONS.get(part, {}).items()}
    return encoder_folder(cache_dir, hidden, layers, **options)


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


def train_arm(config, arm: str, data: dict, seed: int, train_on_dev: bool = True) -> dict:
    """One fold, one arm, one seed: per-epoch dev and test UA. `train_on_dev`: the dev speaker
    trains too (the protocol's `data.train_on_dev=true`; dev UA is then not held out)."""
    from transformers import get_scheduler

    from emoscale.models.speech_encoder import load_speech_encoder
    from emoscale.models.speech_text import SpeechTextModel

    torch.manual_seed(seed)
    classes = 7
    model = SpeechTextModel(load_speech_encoder(config), None, classes, config)
    if "asp_zero_init" in arm.split(
        "+"
    ):  # attention scores start equal: ASP starts as mean + std pooling
        torch.nn.init.zeros_(model.audio_pool.attention[-1].weight)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.train.lr, weight_decay=0.0)
    train_x, train_y = data["train"]
    if train_on_dev:
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


def run_task(base: list[str], fold: str, arm: str, seed: int, train_on_dev: bool) -> dict:
    """One arm on one fold with one seed (in a worker process with --jobs > 1); prints its result
    at once."""
    from emoscale.config import load_config

    torch.set_num_threads(1)
    keys = [key for part in arm.split("+") for key in ARMS[part]]
    config = load_config(overrides=[*base, *keys, f"data.fold={fold}"])
    key = (fold, tuple(base), config.model.audio_path)  # the encoder's extractor decides scaling
    if key not in DECODED:
        DECODED.clear()
        DECODED[key] = decoded_splits(config)
    started = time.perf_counter()
    outcome = train_arm(config, arm, DECODED[key], seed, train_on_dev)
    outcome["seconds"] = time.perf_counter() - started
    shown = {k: v for k, v in outcome.items() if k != "history"}
    print(arm, fold, seed, shown, flush=True)
    return outcome


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
    return {"mean": mean, "std": spread}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds")
    parser.add_argument("--arms", help="comma-separated; default: every arm (--quick: two)")
    parser.add_argument("--base-keys", nargs="*", default=[], help="keys under every arm")
    parser.add_argument(
        "--hold-out-dev", action="store_true", help="the dev speaker does not train (7 speakers)"
    )
    parser.add_argument("--quick", action="store_true", help="synthetic clips, 2 epochs, 1 fold")
    parser.add_argument("--json", help="write every arm's per-fold, per-epoch UA here")
    parser.add_argument("--jobs", type=int, default=1, help="(fold, arm, seed) runs in parallel")
    parser.add_argument("--cache-dir", default=str(CACHE), help="the random encoders are kept here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)

    hidden, layers = (64, 2) if not args.quick else (16, 1)
    if args.quick:
        args.data = str(synthetic_emodb(Path(args.cache_dir) / "quick-emodb"))
        args.folds, args.epochs = "0", 2
        args.arms = args.arms or "emoscale,meanstd"
    arms = (args.arms or ",".join(ARMS)).split(",")
    unknown = [part for arm in arms for part in arm.split("+") if part not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    base = model_and_schedule_keys(
        args.data, arm_encoder(args.cache_dir, hidden, layers), args.lr, args.epochs
    )
    base += args.base_keys
    encoders = {arm: arm_encoder(args.cache_dir, hidden, layers, arm) for arm in arms}
    seeds = [int(seed) for seed in args.seeds.split(",")]
    # seed by seed: a call stopped early still has every arm on the same (fold, seed) runs
    tasks = [(fold, arm, seed) for seed in seeds for fold in args.folds.split(",") for arm in arms]
    bases = [[*base, f"model.audio_path={encoders[arm]}"] for _, arm, _ in tasks]
    train_on_dev = not args.hold_out_dev
    started = time.perf_counter()
    if args.jobs > 1:  # each task in its own process, decoding its fold itself
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            folds, arm_names, seed_list = zip(*tasks, strict=True)
            count = len(tasks)
            runs = pool.map(run_task, bases, folds, arm_names, seed_list, [train_on_dev] * count)
            outcomes = list(runs)
    else:
        outcomes = [
            run_task(b, fold, arm, seed, train_on_dev)
            for b, (fold, arm, seed) in zip(bases, tasks, strict=True)
        ]
    results: dict[str, dict] = {}
    for (fold, arm, seed), outcome in zip(tasks, outcomes, strict=True):
        results.setdefault(arm, {}).setdefault(f"fold{fold}", {})[f"seed{seed}"] = outcome
    lines = [
        "| arm | test UA, last epoch: mean ± std over (fold, seed) runs | per fold (mean of seeds) |"
        " test UA at the best dev epoch |",
        "|---|---|---|---|",
    ]
    summary = {}
    for arm, folds in results.items():
        runs = [run for fold in folds.values() for run in fold.values()]
        last = mean_std([run["test_last"] for run in runs])
        at_best = mean_std([run["test_at_best_dev"] for run in runs])
        per_fold = {
            name: mean_std([run["test_last"] for run in fold.values()])["mean"]
            for name, fold in folds.items()
        }
        summary[arm] = {"test_last": last, "test_at_best_dev": at_best, "per_fold": per_fold}
        cells = " / ".join(f"{value:.3f}" for value in per_fold.values())
        lines.append(
            f"| {arm} | {last['mean']:.3f} ± {last['std']:.3f} (n={len(runs)}) | {cells} |"
            f" {at_best['mean']:.3f} |"
        )
    seconds = time.perf_counter() - started
    load = os.getloadavg()
    print(
        "\n".join(lines)
        + f"\n{seconds:.0f} s; folds {args.folds}, seeds {args.seeds}, {args.epochs} epochs,"
        f" {'7' if args.hold_out_dev else '8'} training speakers; load average at the end"
        f" {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
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
