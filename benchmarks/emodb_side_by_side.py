"""EmoDB side by side (issue 15, item 3): emoscale's fusion path vs a minimal hand-written loop.

    nice -n 5 python benchmarks/emodb_side_by_side.py --jobs 10 --json runs/bench/emodb_side_by_side.json
    python benchmarks/emodb_side_by_side.py --folds 0 --epochs 2 --json /tmp/try.json   # one fold
    python benchmarks/emodb_side_by_side.py --quick     # seconds: generated tones, 16x1 encoder

The issue's protocol: a random-init WavLM 64 wide x 2 layers (emoscale.tiny.encoders), audio only,
trained whole from scratch, 5 speaker folds (two test speakers each, data/folds.py), 15 epochs,
lr 1e-3 cosine, batch 16, 2.0 s clips at 16 kHz, test UA. Both sides start from the same saved
encoder weights and see the same test speakers.

- emoscale: `emoscale cv` (studies/cv.run, one fold per call) with `--emoscale-keys` on top of the
  protocol's keys; with `eval.select=last` (the protocol's) the model after the last epoch is
  tested, as in the minimal loop. The fold's dev speaker trains too (`data.train_on_dev=true`), as
  in the issue's minimal loop; `--hold-out-dev` carves it out of training on both sides (what the
  trainer does by default, and what `--emoscale-keys eval.select=best` needs to pick an epoch).
  The minimal loop's head and schedule as emoscale keys (recipes/small_models/emodb_scratch_wavlm):
  `--emoscale-keys fusion.pooling=mean_std fusion.pooling_layers=false fusion.classifier_layers=1
  fusion.dropout=0 train.warmup_ratio=0 train.max_grad_norm=null`.
- minimal: one function below: soundfile + resample + per-clip normalisation, the same encoder with
  its dropout/SpecAugment, mean+std pooling over real frames, one linear layer, AdamW(lr, wd 0),
  cosine without warm-up, no clipping; trained on emoscale's train split (the same speakers), test
  UA after the last epoch (no dev selection).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from bench_files import SHARED_DATA, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = SHARED_DATA.parent
DEFAULT_DATA = SHARED / "data" / "emodb"
CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"
NUM_FOLDS = 5


def synthetic_emodb(folder: Path, seconds: float = 0.5, per_class: int = 2) -> Path:
    """EmoDB's file layout with tones for `--quick`: 10 speakers x 7 emotions x `per_class` clips
    of `seconds` at 16 kHz, each emotion its own pitch, so a quick run has something to learn."""
    import numpy as np
    import soundfile

    from emoscale.data.emodb import LETTERS

    wav = folder / "wav"
    if wav.is_dir() and len(list(wav.glob("*.wav"))) == 10 * 7 * per_class:
        return folder
    wav.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    time_axis = np.arange(int(seconds * 16_000)) / 16_000
    for speaker in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16"):
        for rank, letter in enumerate(LETTERS):
            for take in range(per_class):
                tone = np.sin(2 * np.pi * (150 + 60 * rank) * time_axis)
                noise = 0.3 * rng.standard_normal(time_axis.size)
                name = f"{speaker}a0{1 + take}{letter}{'abcdefg'[take]}.wav"
                soundfile.write(wav / name, (0.3 * (tone + noise)).astype("float32"), 16_000)
    return folder


def model_and_schedule_keys(data: str, encoder: Path, lr: float, epochs: int) -> list[str]:
    """The issue's protocol: the encoder trained whole on EmoDB's speaker folds (also
    emodb_factors.py's base)."""
    return [
        "model.family=fusion",
        "model.modalities=audio",
        f"model.audio_path={encoder}",
        "model.audio_method=full",
        "data.dataset=emodb",
        f"data.path={data}",
        f"data.num_folds={NUM_FOLDS}",
        "data.max_seconds=2.0",
        "fusion.dim=128",
        "fusion.classifier_hidden=128",
        "train.batch_size=16",
        f"train.lr={lr}",
        f"train.epochs={epochs}",
        "train.scheduler=cosine",
        "eval.metric=ua",
    ]


def encoder_folder(cache_dir: str | Path, hidden: int, layers: int, **options) -> Path:
    """The protocol's random WavLM (made once, seed 0), or a variant with emoscale.tiny's
    make_tiny_speech_encoder options (front_end_norm, normalize_waveform): the same shape."""
    from emoscale.tiny.encoders import make_tiny_speech_encoder

    suffix = "".join(f"-{key}={value}" for key, value in options.items())
    folder = Path(cache_dir) / f"wavlm-random-{hidden}x{layers}{suffix}"
    if not (folder / "config.json").is_file():
        make_tiny_speech_encoder(folder, "wavlm", hidden, layers, num_heads=4, **options)
    return folder


def protocol_keys(
    args: argparse.Namespace, encoder: Path, out: Path, emoscale_keys: bool = True
) -> list[str]:
    return [
        *model_and_schedule_keys(args.data, encoder, args.lr, args.epochs),
        # The minimal loop tests the model after its last epoch; so does emoscale here (the trainer's
        # default, `best`, picks the epoch on one dev speaker: `--emoscale-keys eval.select=best`).
        "eval.select=last",
        # Every speaker outside the test fold trains, on both sides (the minimal loop held
        # no dev speaker out); `--hold-out-dev`: one dev speaker is carved out of training, as the
        # trainer's default does, on both sides.
        *([] if args.hold_out_dev else ["data.train_on_dev=true"]),
        f"output_dir={out}",
        *(args.emoscale_keys if emoscale_keys else []),
    ]


def run_emoscale_fold(args: argparse.Namespace, encoder: Path, fold: int, seed: int) -> float:
    """`emoscale cv` on one fold (its own cv folder, so folds can run in parallel); test UA of the
    model cv tested (eval.select: the last one, or the best on dev)."""
    from emoscale.studies import cv

    out = Path(args.out) / f"seed{seed}" / f"fold{fold}"
    keys = [*protocol_keys(args, encoder, out), f"seed={seed}"]
    parent, _ = cv.run(None, keys, folds=str(fold), overwrite=True)
    (summary,) = json.loads((parent / "cv.json").read_text())["folds"]
    return summary["test"]["ua"]


def run_task(args: argparse.Namespace, encoder: Path, side: str, fold: int, seed: int) -> dict:
    """One side on one fold with one seed, timed (wall and this process's CPU seconds: the CPU
    seconds are what the run costs whatever else the machine runs); in a worker with --jobs > 1."""
    torch.set_num_threads(1)
    started, cpu_started = time.perf_counter(), time.process_time()
    run = run_emoscale_fold if side == "emoscale" else run_minimal_fold
    ua = run(args, encoder, fold, seed)
    outcome = {
        "side": side,
        "fold": fold,
        "seed": seed,
        "ua": ua,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }
    print(outcome, flush=True)  # each run as it ends: a long call shows its progress
    return outcome


def unweighted_accuracy(predicted: list[int], gold: list[int], classes: int) -> float:
    recalls = []
    for label in range(classes):
        rows = [p for p, g in zip(predicted, gold, strict=True) if g == label]
        if rows:
            recalls.append(sum(p == label for p in rows) / len(rows))
    return sum(recalls) / len(recalls)


def run_minimal_fold(args: argparse.Namespace, encoder: Path, fold: int, seed: int) -> float:
    """The whole minimal loop for one fold; returns test UA after the last epoch."""
    import numpy as np
    import soundfile
    import torchaudio
    from transformers import WavLMModel

    from emoscale.config import load_config
    from emoscale.data import load_corpus

    config = load_config(
        overrides=[
            *protocol_keys(args, encoder, Path("unused"), emoscale_keys=False),
            f"data.fold={fold}",
        ]
    )
    corpus = load_corpus(config.data)

    def waves(examples):
        out = []
        for example in examples:
            data, rate = soundfile.read(Path(args.data) / example.audio_path, dtype="float32")
            wave = torchaudio.functional.resample(torch.from_numpy(data), rate, 16_000)[:32_000]
            out.append((wave - wave.mean()) / (wave.std() + 1e-7))
        return torch.nn.utils.rnn.pad_sequence(out, batch_first=True)

    train, test = corpus.split("train"), corpus.split("test")
    train_x, test_x = waves(train), waves(test)
    train_y = torch.tensor([e.label for e in train])
    classes = len(corpus.info.label_names)
    torch.manual_seed(seed)
    np.random.seed(seed)  # WavLM's SpecAugment draws its masks from numpy: a seed repeats a run
    model = WavLMModel.from_pretrained(encoder, layerdrop=0.0)
    head = torch.nn.Linear(2 * model.config.hidden_size, classes)
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
    steps = args.epochs * math.ceil(len(train) / 16)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)

    def logits(x):
        hidden = model(x).last_hidden_state  # every clip is 2.0 s: no padding to mask
        return head(torch.cat([hidden.mean(1), hidden.std(1)], dim=-1))

    for _ in range(args.epochs):
        model.train()
        for rows in torch.randperm(len(train)).split(16):
            loss = torch.nn.functional.cross_entropy(logits(train_x[rows]), train_y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([logits(x).argmax(-1) for x in test_x.split(32)]).tolist()
    return unweighted_accuracy(predicted, [e.label for e in test], classes)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="EmoDB folder (holding wav/)")
    parser.add_argument("--folds", help="comma-separated fold numbers (default: all 5)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds")
    parser.add_argument(
        "--front-end-norm",
        choices=("layer", "group"),
        default="layer",
        help="the random encoder's conv front end (emoscale.tiny.encoders; the same 64 x 2 shape)",
    )
    parser.add_argument("--sides", default="emoscale,minimal")
    parser.add_argument("--emoscale-keys", nargs="*", default=[], help="extra emoscale keys")
    parser.add_argument(
        "--hold-out-dev",
        action="store_true",
        help="both sides train without the dev speaker (emoscale's default split)",
    )
    parser.add_argument("--out", default=str(CACHE / "emodb-side-by-side"), help="cv run folders")
    parser.add_argument("--json", help="write per-fold UA, means and wall times here")
    parser.add_argument("--jobs", type=int, default=1, help="(side, fold) runs in parallel")
    parser.add_argument("--cache-dir", default=str(CACHE), help="the random encoder is kept here")
    parser.add_argument(
        "--quick", action="store_true", help="seconds: generated tones, 16x1 encoder, 1 fold"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    hidden, layers = (16, 1) if args.quick else (64, 2)
    if args.quick:
        args.data = str(synthetic_emodb(Path(args.cache_dir) / "quick-emodb"))
        args.folds, args.epochs = args.folds or "0", 2
    options = {} if args.front_end_norm == "layer" else {"front_end_norm": args.front_end_norm}
    encoder = encoder_folder(args.cache_dir, hidden, layers, **options)
    folds = [int(f) for f in args.folds.split(",")] if args.folds else list(range(NUM_FOLDS))
    seeds = [int(seed) for seed in args.seeds.split(",")]
    # seed by seed, fold by fold, so the two sides of a fold run side by side in time (the same
    # load on both)
    tasks = [
        (side, fold, seed) for seed in seeds for fold in folds for side in args.sides.split(",")
    ]
    started = time.perf_counter()
    if args.jobs > 1:  # each (side, fold, seed) in its own process: the same work, less wall time
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            count = len(tasks)
            sides, task_folds, task_seeds = zip(*tasks, strict=True)
            runs = list(
                pool.map(run_task, [args] * count, [encoder] * count, sides, task_folds, task_seeds)
            )
    else:
        runs = [run_task(args, encoder, *task) for task in tasks]
    wall = time.perf_counter() - started
    results: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    for run in runs:
        per_seed = results.setdefault(run["side"], {}).setdefault(f"seed{run['seed']}", {})
        per_seed[f"fold{run['fold']}"] = run["ua"]
        seconds[run["side"]] = seconds.get(run["side"], 0.0) + run["seconds"]
        cpu_seconds[run["side"]] = cpu_seconds.get(run["side"], 0.0) + run["cpu_seconds"]
    # per fold: the mean over seeds; mean UA: the mean over folds, ± the std of that mean across
    # seeds (one value per seed)
    header = (
        "| side | "
        + " | ".join(f"fold {i}" for i in folds)
        + " | mean UA ± std over seeds | per seed | wall s | CPU s |"
    )
    lines = [header, "|---" * (len(folds) + 5) + "|"]
    mean_ua = {}
    for side, per_seed in results.items():
        fold_means = [sum(s[f"fold{i}"] for s in per_seed.values()) / len(per_seed) for i in folds]
        seed_means = [sum(s.values()) / len(s) for s in per_seed.values()]
        mean = sum(seed_means) / len(seed_means)
        spread = (sum((m - mean) ** 2 for m in seed_means) / max(1, len(seed_means) - 1)) ** 0.5
        mean_ua[side] = {"mean": mean, "std_over_seeds": spread, "per_seed": seed_means}
        cells = " | ".join(f"{v:.3f}" for v in fold_means)
        each = " / ".join(f"{m:.3f}" for m in seed_means)
        lines.append(
            f"| {side} | {cells} | **{mean:.3f}** ± {spread:.3f} | {each} |"
            f" {seconds[side]:.0f} | {cpu_seconds[side]:.0f} |"
        )
    command = " ".join(shlex.quote(p) for p in [sys.executable, __file__, *argv])
    load = os.getloadavg()
    print(
        "\n".join(lines)
        + f"\nWhole call {wall:.0f} s with {args.jobs} job(s); load average at the end"
        f" {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"
        + f"\nCommand: {command}"
    )
    result = {
        "benchmark": "emodb_side_by_side",
        "table": "\n".join(lines),
        "ua": results,
        "mean_ua": mean_ua,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "runs": runs,
        "wall_seconds": wall,
        "jobs": args.jobs,
        "load_average_at_end": load,
        "command": command,
        "emoscale_keys": protocol_keys(args, encoder, Path(args.out)),
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
