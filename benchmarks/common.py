"""What the bench_*.py scripts share: the corpora and tiny model they run on, the A B A B timing
loop, and the printed table and JSON every benchmark writes.

Timing on a shared, noisy machine: every comparison runs all its sides in one process, interleaved
(A B A B ...), and reports medians and the ratio of medians, never a single run.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from bench_files import SHARED_DATA

from emoscale.config import RunConfig, load_config
from emoscale.data import Corpus, load_corpus
from emoscale.data.examples import EMOTION_TEMPLATE, PAPER_TEMPLATE
from emoscale.models.prompt_lm import label_list_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = SHARED_DATA  # sst/, meld/ as described in its SOURCES.md
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "emoscale")

# The benchmarks' tiny Llama: big enough that a step is matrix work, not Python: a LoRA training
# step on batch 16 x ~55 SST-5 tokens is ~10 GFLOP, ~140 ms on one core. --quick: QUICK_MODEL
# (the demo's shape), where Python overhead dominates.
MODEL = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "vocab_size": 2000}
QUICK_MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "vocab_size": 600}


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds: tiny sizes, one repeat (smoke test)"
    )
    parser.add_argument("--json", help="write raw timings, medians, ratios and machine facts here")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding sst/ (and meld/)")
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE), help="tiny models are written here once"
    )
    parser.add_argument("--repeats", type=int, help="timed runs of each side (default per mode)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two OpenMP threads spin-wait on "
        "each other and ran 3-8x slower and far noisier than one)",
    )
    return parser


def start(args: argparse.Namespace) -> None:
    """Settings every benchmark applies before it builds anything."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
    torch.set_num_threads(args.threads)


# --- data and model ------------------------------------------------------------------------------


def config(*overrides: str) -> RunConfig:
    return load_config(overrides=list(overrides))


def load_sst5(data: str | Path) -> Corpus:
    return load_corpus(config("data.dataset=sst5", f"data.path={Path(data) / 'sst'}").data)


def load_meld(data: str | Path) -> Corpus:
    return load_corpus(config("data.dataset=meld", f"data.path={Path(data) / 'meld'}").data)


def subset(corpus: Corpus, train: int, dev: int, test: int) -> Corpus:
    """The first examples of each split: a fixed subset, the same in every run."""
    sizes = {"train": train, "dev": dev, "test": test}
    return Corpus(corpus.info, {name: corpus.split(name)[:n] for name, n in sizes.items()})


def tokenizer_texts(*corpora: Corpus) -> list[str]:
    """The corpora's training texts plus their prompts, so label words are whole tokens, as in a
    real LLM's vocabulary."""
    texts = []
    for corpus in corpora:
        train = [example.text for example in corpus.split("train")]
        template = EMOTION_TEMPLATE if corpus.info.name == "meld" else PAPER_TEMPLATE
        labels = label_list_text(corpus.info.label_words)
        texts += train + [template.format(labels=labels, text=text) for text in train[:500]]
    return texts


def tiny_model(cache_dir: str | Path, texts: list[str], shape: dict) -> Path:
    """A random tiny Llama with a byte-level BPE tokenizer trained on `texts`, made once per
    (shape, texts) and reused."""
    from emoscale.tiny.lm import make_tiny

    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:10]
    name = "llama-{hidden_size}x{num_layers}-v{vocab_size}".format(**shape) + f"-{digest}"
    folder = Path(cache_dir) / name
    if not (folder / "config.json").is_file():
        make_tiny(folder, texts, arch="llama", **shape)
    return folder


# --- timing the trainer --------------------------------------------------------------------------


def now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process). With one torch thread, CPU time is the work
    done, whatever else the shared machine runs; wall time is what a user waits."""
    return time.perf_counter(), time.process_time()


def rates(count: float, start: tuple[float, float], end: tuple[float, float]) -> dict:
    wall, cpu = end[0] - start[0], end[1] - start[1]
    return {"per_s": count / wall, "per_cpu_s": count / cpu, "seconds": wall, "cpu_seconds": cpu}


class Clock:
    """A model family that notes when each loss is computed, on which batch, and when the first
    prediction starts (the end of training in emoscale.training.trainer.train); the rest is the family's."""

    def __init__(self, family):
        self.family = family
        self.loss_times: list[tuple[float, float]] = []
        self.batches: list[tuple[int, ...]] = []
        self.first_loss: float | None = None
        self.end: tuple[float, float] | None = None
        self.tokens = {"real": 0, "padded": 0}

    def __getattr__(self, name):
        return getattr(self.family, name)

    def loss(self, model, batch, terms=None):
        self.loss_times.append(now())
        self.batches.append(tuple(batch["example_index"].tolist()))
        self.tokens["real"] += int(batch["attention_mask"].sum())
        self.tokens["padded"] += batch["attention_mask"].numel()
        loss = self.family.loss(model, batch, terms)
        if self.first_loss is None:
            self.first_loss = loss.item()
        return loss

    def predict(self, model, batch):
        if self.end is None:
            self.end = now()
        return self.family.predict(model, batch)

    def predict_answers(self, model, batch):
        """What the trainer's evaluation calls (models.family.predict_with_answers): the end of
        training too."""
        from emoscale.models.family import predict_with_answers

        if self.end is None:
            self.end = now()
        return predict_with_answers(self.family, model, batch)

    def measure(self, skip: int = 0, count: int | None = None) -> dict:
        """Whole steps from the (skip+1)-th loss to the end of training; rates are of `count`
        (default: the steps)."""
        times = self.loss_times[skip:] + [self.end]
        steps = len(times) - 1
        return {
            **rates(steps if count is None else count, times[0], times[-1]),
            "steps": steps,
            "padding_efficiency": self.tokens["real"] / self.tokens["padded"],
            "step_seconds": [later[0] - earlier[0] for earlier, later in itertools.pairwise(times)],
        }


def run_emoscale_trainer(config: RunConfig, family, corpus: Corpus, run_dir: Path) -> Clock:
    """emoscale.training.trainer.train, called as emoscale/train.py calls it, timed by a Clock."""
    from emoscale.training import trainer

    clock = Clock(family)
    accelerator = trainer.make_accelerator(config)
    accelerator.project_configuration.project_dir = str(run_dir)  # as train.run sets them
    accelerator.project_configuration.logging_dir = str(run_dir)
    trainer.train(config, clock, corpus, run_dir, accelerator, resume=False)
    shutil.rmtree(run_dir, ignore_errors=True)
    return clock


class PeakMemory:
    """Peak resident memory of this process while a block runs (GiB), sampled every 20 ms by a
    thread: ru_maxrss is the peak of the whole process, so it cannot tell sides in one run apart.
    `start` is the resident memory when the block began (what earlier sides left allocated)."""

    def __init__(self):
        self.start = self.peak = resident_gib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, resident_gib())

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.start = self.peak = resident_gib()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_gib())


def resident_gib() -> float:
    """This process' resident memory now (Linux /proc; 0.0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


# --- timing --------------------------------------------------------------------------------------


def alternate(runs: dict[str, Callable[[], dict]], repeats: int) -> dict[str, list[dict]]:
    """Call every run `repeats` times, interleaved A B C A B C ...; each call returns its own
    measurement (a dict). Interleaving spreads the machine's load changes over all sides."""
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for name, run in runs.items():
            measured = run()
            results[name].append(measured)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in measured.items() if isinstance(v, float))
            print(f"  [{repeat + 1}/{repeats}] {name}: {shown}", flush=True)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def summary(values: list[float]) -> dict:
    return {"median": median(values), "min": min(values), "max": max(values), "raw": values}


CLOCKS = {"per_s": "wall", "per_cpu_s": "CPU"}


def compare(results: dict[str, list[dict]], unit: str, reference: str) -> tuple[str, dict]:
    """A table of every side's median rate (wall and CPU time) and the ratio of medians
    reference / side; also the paired ratios of runs made next to each other."""
    stats = {
        name: {key: summary([r[key] for r in runs]) for key in CLOCKS}
        for name, runs in results.items()
    }
    ratios = {}
    for name, runs in results.items():
        if name == reference:
            continue
        ratios[name] = {
            key: stats[reference][key]["median"] / stats[name][key]["median"] for key in CLOCKS
        }
        for key in CLOCKS:
            ratios[name][f"paired_{key}"] = [
                mine[key] / theirs[key]
                for mine, theirs in zip(results[reference], runs, strict=True)
            ]
    headers = [
        "run", f"{unit}/s (wall)", "wall min-max", f"{unit}/CPU-s", "CPU min-max", "runs",
        f"{reference} / run (wall)", f"{reference} / run (CPU)",
    ]  # fmt: skip
    rows = []
    for name, runs in results.items():
        wall, cpu = stats[name]["per_s"], stats[name]["per_cpu_s"]
        rows.append(
            [name, wall["median"], f"{wall['min']:.3g}-{wall['max']:.3g}", cpu["median"],
             f"{cpu['min']:.3g}-{cpu['max']:.3g}", len(runs)]
            + (["-", "-"] if name == reference else [f"{ratios[name][key]:.3f}" for key in CLOCKS])
        )  # fmt: skip
    if all("padding_efficiency" in run for runs in results.values() for run in runs):
        headers.append("real/padded tokens")
        for row, runs in zip(rows, results.values(), strict=True):
            row.append(median([run["padding_efficiency"] for run in runs]))
    return markdown_table(headers, rows), {"rates": stats, "ratios": ratios}


# --- output --------------------------------------------------------------------------------------


def machine() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "versions": versions,
    }


def goal_word(met: bool) -> str:
    return "met" if met else "MISSED"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def finish(args: argparse.Namespace, name: str, table: str, results: dict) -> dict:
    """Print the table and write the JSON (`results` plus the table, settings and machine)."""
    payload = {
        "benchmark": name,
        "quick": args.quick,
        "settings": {key: value for key, value in vars(args).items() if key != "json"},
        "machine": machine(),
        **results,
        "table": table,
    }
    print()
    print(table)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))
        print(f"\nwrote {path}")
    return payload


def sst5_lora_setup(args: argparse.Namespace, shape: dict, name: str, *extra: str):
    """The training benchmarks' shared setup: the tiny model (cached), the first --train SST-5
    examples, a LoRA run config with batch 16 writing into a fresh temporary folder.
    Returns (model_path, corpus, config, work folder)."""
    sst = load_sst5(args.data)
    model_path = tiny_model(args.cache_dir, tokenizer_texts(sst), shape)
    corpus = subset(sst, args.train, 16, 16)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    run_config = config(
        f"model.path={model_path}",
        "model.method=lora",
        "data.dataset=sst5",
        f"data.path={Path(args.data) / 'sst'}",
        "train.batch_size=16",
        "eval.batch_size=16",
        f"output_dir={work / 'run'}",
        *extra,
    )
    return model_path, corpus, run_config, work
