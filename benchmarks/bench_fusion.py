"""LoRA-MER fusion training: epoch time with a warm and a cold text-feature cache, and the share of
step time spent waiting for data with 0 and 2 DataLoader workers (issue 7, items 5 and 6).

    python benchmarks/bench_fusion.py --json runs/bench/fusion.json
    python benchmarks/bench_fusion.py --quick                  # seconds: tiny sizes, one repeat

Data: EmoDB's WAVs (--data holding emodb/: 22.05 kHz, 2.0 s, so every clip is decoded and
resampled to 16 kHz in the DataLoader), or, without that folder, noisy tones written at 22.05 kHz.
Each clip gets its own generated transcript (sentences of emoscale/tiny/demo.py), as in IEMOCAP, where
every utterance's text differs; EmoDB's own text is one of ten sentences and would leave the cache
almost nothing to do. Labels are EmoDB's emotions (random for the tones): timing only.
Model: the fusion family as the paper runs it (speech encoder with LoRA r=2 on q/v, frozen text
encoder, both modalities, MINE), on random encoders from emoscale.tiny.encoders: WavLM 64 wide x 2
layers, and a RoBERTa 256 wide x 4 layers, larger than the tests' 32 x 2 so that its cost shows.

Sides, interleaved (A B C A B C ...), each a whole `emoscale.training.trainer.train` run:
- warm cache, 0 workers: fusion.text_cache_dir already holds every text's features.
- cold cache, 0 workers: "without the cache". emoscale has no switch that turns the cache off, so
  this side gives every run a fresh, empty fusion.text_cache_dir: every text is encoded when the
  family builds its loaders (before the first epoch) and read back from disk after that. Its
  "first epoch" is that encoding plus epoch 1, which is what a run without a cache would pay in
  every epoch.
- warm cache, 2 workers: as the first, decoding audio in two DataLoader worker processes.

Timing, from outside the trainer: a wrapper around the family notes when each epoch starts
(set_epoch on the train batch sampler), when each batch reaches the loss (the loop's next() has
returned); a global optimizer step hook notes when each step ends. Data wait of a step = from the
end of the previous step (or the epoch start) to its batch reaching the loss: time blocked in
next(iterator), worker start-up at each epoch's first batch included, plus the loop's own few
microseconds of bookkeeping. Epoch time = epoch start to its last step's end (dev evaluation and
checkpoints excluded). Text-encoder forward passes are counted by wrapping RobertaModel.forward
(and checked against TextFeatureCache.forward_passes). Times are wall seconds and, in brackets, the
main process' CPU seconds: with one torch thread that is the work done whatever else the shared
machine runs (the workers' CPU is not in it). Goals: zero text-encoder passes after the first
epoch; report the data wait share.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import common
import numpy as np
import soundfile
from torch.optim.optimizer import register_optimizer_step_post_hook

from emoscale.data import load_corpus
from emoscale.data.emodb import EMOTIONS, LETTERS, NAME
from emoscale.models import build_family
from emoscale.models.text_features import TextFeatureCache
from emoscale.tiny import demo, demo_fusion
from emoscale.tiny.encoders import make_tiny_speech_encoder, make_tiny_text_encoder
from emoscale.training import trainer

SIZES = {"train": 192, "dev": 32, "test": 32}
QUICK_SIZES = {"train": 32, "dev": 16, "test": 16}
SPEECH = {"hidden_size": 64, "num_layers": 2, "num_heads": 4}
TEXT = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "vocab_size": 2000}
QUICK_SPEECH = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
QUICK_TEXT = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "vocab_size": 300}
TONE_RATE = 22_050  # EmoDB's rate: the tones are resampled like EmoDB's clips
SIDES = {  # name -> (cache, num_workers)
    "warm cache, 0 workers": ("warm", 0),
    "cold cache, 0 workers": ("cold", 0),
    "warm cache, 2 workers": ("warm", 2),
}


# --- data and encoders ---------------------------------------------------------------------------


def transcripts(count: int) -> list[str]:
    """A different transcript per clip: three demo sentences and a number."""
    sentences = [text for text, _ in demo.sentences(3 * count, seed=7)]
    return [" ".join(sentences[3 * i : 3 * i + 3]) + f" Number {i}." for i in range(count)]


def write_corpus(folder: Path, emodb: Path, sizes: dict[str, int], seconds: float) -> list[str]:
    """train/dev/test.csv (id, text, label, audio_path); returns the label names."""
    folder.mkdir(parents=True, exist_ok=True)
    count = sum(sizes.values())
    texts = transcripts(count)
    wavs = sorted((emodb / "wav").glob("*.wav")) if (emodb / "wav").is_dir() else []
    rng = random.Random(0)
    if wavs:
        rng.shuffle(wavs)
        clips = [(str(path), LETTERS[NAME.match(path.name).group(3)]) for path in wavs[:count]]
    else:
        (folder / "wav").mkdir(parents=True, exist_ok=True)
        clips = []
        for number in range(count):
            path = folder / "wav" / f"{number:04d}.wav"
            wave = demo_fusion.tone(rng.choice([220.0, 440.0, 880.0]), seconds, TONE_RATE, rng)
            soundfile.write(path, np.asarray(wave), TONE_RATE)
            clips.append((str(path), rng.choice(EMOTIONS)))
    rows = iter(zip(texts, clips, strict=True))
    for split, size in sizes.items():
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text", "label", "audio_path"])
            for number in range(size):
                text, (path, label) = next(rows)
                writer.writerow([f"{split}-{number}", text, label, path])
    return list(EMOTIONS)


def encoders(cache_dir: Path, texts: list[str], quick: bool) -> tuple[Path, Path]:
    """(speech, text) model folders, made once per shape and kept in cache_dir."""
    speech_shape, text_shape = (QUICK_SPEECH, QUICK_TEXT) if quick else (SPEECH, TEXT)
    speech = cache_dir / "wavlm-{hidden_size}x{num_layers}".format(**speech_shape)
    if not (speech / "config.json").is_file():
        make_tiny_speech_encoder(speech, "wavlm", **speech_shape)
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:10]
    name = "roberta-{hidden_size}x{num_layers}-v{vocab_size}".format(**text_shape) + f"-{digest}"
    text = cache_dir / name
    if not (text / "config.json").is_file():
        make_tiny_text_encoder(text, texts, **text_shape)
    return speech, text


# --- timing --------------------------------------------------------------------------------------


class Timeline:
    """The family, plus when each epoch starts, each batch reaches the loss and each step ends:
    (wall, CPU) pairs from common.now()."""

    def __init__(self, family, passes: list[int]):
        self.family = family
        self.passes = passes  # [text-encoder forward passes so far], shared with count_passes
        self.setup: dict[str, tuple[float, float]] = {}  # split -> (wall, CPU) seconds
        self.epochs: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.family, name)

    def dataloader(self, examples, train: bool, seed: int, split: str = ""):
        started = common.now()
        loader = self.family.dataloader(examples, train, seed, split)  # encodes missing texts
        ended = common.now()
        self.setup[split] = (ended[0] - started[0], ended[1] - started[1])
        if train:
            sampler = loader.batch_sampler
            set_epoch = sampler.set_epoch

            def timed_set_epoch(epoch: int) -> None:
                set_epoch(epoch)
                start = common.now()
                self.epochs.append(
                    {"start": start, "passes": self.passes[0], "ready": [], "done": []}
                )

            sampler.set_epoch = timed_set_epoch  # the trainer calls it at every epoch start
        return loader

    def loss(self, model, batch, terms=None):
        self.epochs[-1]["ready"].append(time.perf_counter())
        return self.family.loss(model, batch, terms)

    def step_done(self, optimizer, args, kwargs) -> None:
        self.epochs[-1]["done"].append(common.now())

    def measure(self) -> dict:
        epochs, epochs_cpu, waits, steps, firsts = [], [], [], [], []
        for epoch in self.epochs:
            if not epoch["done"]:
                continue  # the loop's last set_epoch, after the last step
            ends = [wall for wall, _ in epoch["done"]]
            previous = [epoch["start"][0], *ends[:-1]]
            firsts.append(len(steps))  # index of the epoch's first step
            waits += [
                ready - before for ready, before in zip(epoch["ready"], previous, strict=True)
            ]
            steps += [end - before for end, before in zip(ends, previous, strict=True)]
            epochs.append(ends[-1] - epoch["start"][0])
            epochs_cpu.append(epoch["done"][-1][1] - epoch["start"][1])
        # steps but each epoch's first, which also waits for the workers to start
        later = [i for i in range(len(steps)) if i not in firsts]
        starts = [epoch["passes"] for epoch in self.epochs] + [self.passes[0]]
        setup = [sum(clock) for clock in zip(*self.setup.values(), strict=True)]
        return {
            # wall seconds, and CPU seconds of the main process (workers not included)
            "first_epoch_s": setup[0] + epochs[0],  # loader setup (encoding, if any) + epoch 1
            "first_epoch_cpu_s": setup[1] + epochs_cpu[0],
            "later_epoch_s": statistics.median(epochs[1:] or epochs),
            "later_epoch_cpu_s": statistics.median(epochs_cpu[1:] or epochs_cpu),
            "setup_s": setup[0],
            "setup_cpu_s": setup[1],
            "data_share": sum(waits) / sum(steps),
            "data_share_steady": (
                sum(waits[i] for i in later) / sum(steps[i] for i in later) if later else None
            ),
            "epoch_seconds": epochs,
            "epoch_cpu_seconds": epochs_cpu,
            "wait_seconds": waits,
            "step_seconds": steps,
            "setup_seconds": self.setup,
            "text_passes_setup": starts[0],
            "text_passes_per_epoch": [b - a for a, b in zip(starts, starts[1:], strict=False)],
            "cache_forward_passes": self.family.text_cache.forward_passes,
        }


@contextlib.contextmanager
def count_passes(passes: list[int]):
    """passes[0] += 1 on every RobertaModel forward, whoever calls it."""
    from transformers import RobertaModel

    forward = RobertaModel.forward

    def counted(self, *args, **kwargs):
        passes[0] += 1
        return forward(self, *args, **kwargs)

    with mock.patch.object(RobertaModel, "forward", counted):
        yield


def run_side(base: list[str], workers: int, cache: Path, work: Path) -> dict:
    config = common.config(*base, f"train.num_workers={workers}", f"fusion.text_cache_dir={cache}")
    corpus = load_corpus(config.data)
    passes = [0]
    family = Timeline(build_family(config, corpus), passes)
    run_dir = work / "run"
    handle = register_optimizer_step_post_hook(family.step_done)
    try:
        with count_passes(passes):
            accelerator = trainer.make_accelerator(config)
            accelerator.project_configuration.project_dir = str(run_dir)  # as train.run sets them
            accelerator.project_configuration.logging_dir = str(run_dir)
            trainer.train(config, family, corpus, run_dir, accelerator, resume=False)
    finally:
        handle.remove()
        shutil.rmtree(run_dir, ignore_errors=True)
    return family.measure()


def run_cold(base: list[str], work: Path) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="cold-cache-", dir=work))  # fresh and empty every run
    try:
        return run_side(base, 0, cache, work)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# --- report --------------------------------------------------------------------------------------


MEDIANS = (
    "first_epoch_s", "first_epoch_cpu_s", "later_epoch_s", "later_epoch_cpu_s", "setup_s",
    "setup_cpu_s", "data_share", "data_share_steady",
)  # fmt: skip


def side_summary(runs: list[dict]) -> dict:
    summary = {key: common.median([run[key] for run in runs]) for key in MEDIANS}
    shares = [run["data_share"] for run in runs]
    return summary | {
        "data_share_range": [min(shares), max(shares)],
        "text_passes_setup": sorted({run["text_passes_setup"] for run in runs}),
        "text_passes_per_epoch": sorted({p for run in runs for p in run["text_passes_per_epoch"]}),
        "text_passes_after_first_epoch": max(sum(run["text_passes_per_epoch"][1:]) for run in runs),
    }


def report(summaries: dict[str, dict], runs: int, epochs: int, steps: int) -> str:
    def clocks(s: dict, key: str) -> str:
        return f"{s[key + '_s']:.2f} ({s[key + '_cpu_s']:.2f})"

    def passes(counts: list[int]) -> str:
        return " or ".join(str(count) for count in counts)

    rows = [
        [name, clocks(s, "first_epoch"), clocks(s, "later_epoch"), clocks(s, "setup"),
         f"{passes(s['text_passes_setup'])} / {passes(s['text_passes_per_epoch'])}",
         f"{s['data_share']:.1%} ({s['data_share_range'][0]:.1%}-{s['data_share_range'][1]:.1%})",
         f"{s['data_share_steady']:.1%}"]
        for name, s in summaries.items()
    ]  # fmt: skip
    table = common.markdown_table(
        [
            "run", "first epoch s, incl. loader setup: wall (CPU)", "later epochs s", "loader setup s",
            "text-encoder passes: setup / each epoch", "data wait / step time (min-max)",
            "data wait, without each epoch's first step",
        ],
        rows,
    )  # fmt: skip
    warm, cold = summaries["warm cache, 0 workers"], summaries["cold cache, 0 workers"]
    two = summaries["warm cache, 2 workers"]
    after_first = max(s["text_passes_after_first_epoch"] for s in summaries.values())

    def ratio(key: str) -> str:
        wall, cpu = (cold[f"{key}_{clock}"] / warm[f"{key}_{clock}"] for clock in ("s", "cpu_s"))
        return f"{wall:.2f}x wall, {cpu:.2f}x CPU"

    table += (
        f"\n\nMedians of {runs} run(s) per side, {epochs} epochs of {steps} steps each; CPU: the"
        " main process only."
        f"\nCache: first epoch cold (every text encoded, then epoch 1) / warm = {ratio('first_epoch')};"
        f" later epochs cold / warm = {ratio('later_epoch')}. Text-encoder passes after the first"
        f" epoch: {after_first} (goal 0: {'met' if after_first == 0 else 'MISSED'})."
        f"\nData loading: waiting for data is {warm['data_share']:.1%} of step time with 0 workers"
        f" and {two['data_share']:.1%} with 2 ({warm['data_share_steady']:.1%} and"
        f" {two['data_share_steady']:.1%} without each epoch's first step); later epochs"
        f" 0 workers / 2 workers = {warm['later_epoch_s'] / two['later_epoch_s']:.2f}x wall time."
    )
    return table


def main(argv: list[str] | None = None) -> dict:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs per run (default 3; quick 2)")
    args = parser.parse_args(argv)
    common.start(args)
    args.epochs = args.epochs or (2 if args.quick else 3)
    args.repeats = args.repeats or (1 if args.quick else 3)
    sizes = QUICK_SIZES if args.quick else SIZES
    seconds = 0.5 if args.quick else 2.0

    work = Path(tempfile.mkdtemp(prefix="bench-fusion-"))
    try:
        emodb = Path(args.data) / "emodb"
        labels = write_corpus(work / "corpus", emodb, sizes, seconds)
        audio = "EmoDB" if (emodb / "wav").is_dir() else "generated tones"
        texts = transcripts(sum(sizes.values()))
        speech, text = encoders(Path(args.cache_dir), texts, args.quick)
        base = [
            "model.family=fusion",
            f"model.audio_path={speech}",
            f"model.text_path={text}",
            "data.dataset=csv",
            f"data.path={work / 'corpus'}",
            f"data.labels=[{','.join(labels)}]",
            f"data.max_seconds={seconds}",
            "train.batch_size=16",
            "train.lr=1e-3",
            f"train.epochs={args.epochs}",
            "eval.metric=accuracy",
        ]
        warm = work / "warm-cache"  # filled once, before anything is timed
        TextFeatureCache(text, common.config(*base).data.max_length, warm).ensure(texts)
        runs = {
            name: (
                (lambda: run_cold(base, work))
                if cache == "cold"
                else (lambda workers=workers: run_side(base, workers, warm, work))
            )
            for name, (cache, workers) in SIDES.items()
        }
        if not args.quick:  # the process' first run pays one-time costs; it is not timed
            print("warm-up run (not timed)", flush=True)
            runs["warm cache, 0 workers"]()
        results = common.alternate(runs, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summaries = {name: side_summary(side) for name, side in results.items()}
    steps = -(-sizes["train"] // 16)
    table = report(summaries, args.repeats, args.epochs, steps)
    table += (
        f"\nAudio: {audio}, {seconds} s clips at 22.05 kHz resampled to 16 kHz; train/dev/test"
        f" {sizes['train']}/{sizes['dev']}/{sizes['test']}, batch 16; a transcript per clip."
    )
    return common.finish(
        args,
        "fusion",
        table,
        {
            "audio": audio,
            "sizes": sizes,
            "speech_encoder": str(speech),
            "text_encoder": str(text),
            "runs": results,
            "summary": summaries,
            "text_passes_after_first_epoch": max(
                summary["text_passes_after_first_epoch"] for summary in summaries.values()
            ),
        },
    )


if __name__ == "__main__":
    main()
