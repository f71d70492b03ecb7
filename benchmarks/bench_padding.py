"""Padding efficiency of emoscale's training batches: real tokens / padded tokens over an epoch of
SST-5 train, length-grouped (LengthGroupedBatches, the default) against random batches
(issue 7, benchmark 3).

    python benchmarks/bench_padding.py --json runs/bench/padding.json
    python benchmarks/bench_padding.py --quick

Lengths are those emoscale trains on: PromptLMFamily's prompt (the LLM paper's template with the
five SST-5 label words, then the sentence) + the answer (label word + EOS), tokenised by the
benchmarks' tiny byte-level BPE tokenizer trained on SST-5 train and its prompts
(common.tiny_model; no model weights are used). Batch 16. For context: transformers'
LengthGroupedSampler (Trainer's train_sampling_strategy="group_by_length") on the same lengths,
and emoscale's evaluation batches
(sorted_batches, fully sorted). Each sampler runs --epochs epochs (seed 42, epochs 0..n-1); the
table gives the median, min and max efficiency and the time to build one epoch's batches.
Goal: length-grouped >= 0.90.
"""

from __future__ import annotations

import time

import common
import torch
from transformers import AutoTokenizer
from transformers.trainer_pt_utils import LengthGroupedSampler

from emoscale.data.batching import LengthGroupedBatches, padding_efficiency, sorted_batches
from emoscale.models import build_family

GOAL = 0.90
SEED = 42


def chunks(order: list[int], size: int) -> list[list[int]]:
    return [order[start : start + size] for start in range(0, len(order), size)]


def epoch_batches(sampler: str, lengths: list[int], batch_size: int, epoch: int) -> list[list[int]]:
    if sampler in ("length-grouped", "random"):
        batches = LengthGroupedBatches(lengths, batch_size, SEED, sampler == "length-grouped")
        batches.set_epoch(epoch)
        return batches.batches()
    if sampler == "transformers LengthGroupedSampler":
        generator = torch.Generator().manual_seed(SEED + epoch)
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
        return chunks(order, batch_size)
    return sorted_batches(lengths, batch_size)  # evaluation: deterministic


SAMPLERS = {
    "length-grouped": "emoscale training default (data.group_by_length=true)",
    "random": "emoscale with data.group_by_length=false",
    "transformers LengthGroupedSampler": "Trainer, train_sampling_strategy=group_by_length",
    "sorted (evaluation)": "emoscale evaluation batches",
}


def main(argv: list[str] | None = None) -> dict:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs per sampler (default 10; quick 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    common.start(args)
    args.epochs = args.epochs or (2 if args.quick else 10)
    shape = common.QUICK_MODEL if args.quick else common.MODEL

    sst = common.load_sst5(args.data)
    model_path = common.tiny_model(args.cache_dir, common.tokenizer_texts(sst), shape)
    config = common.config(f"model.path={model_path}", "data.dataset=sst5")
    family = build_family(config, sst)
    examples = sst.split("train")
    lengths = [len(family.prompt_ids(e.text)) + len(family.answers[e.label]) for e in examples]
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    results = {}
    for name in SAMPLERS:
        efficiencies, seconds = [], []
        for epoch in range(args.epochs):
            started = time.perf_counter()
            batches = epoch_batches(name, lengths, args.batch_size, epoch)
            seconds.append(time.perf_counter() - started)
            assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
            efficiencies.append(padding_efficiency(batches, lengths))
        results[name] = {
            "efficiency": common.summary(efficiencies),
            "seconds_per_epoch": common.summary(seconds),
            "batches_per_epoch": len(batches),
        }

    grouped = results["length-grouped"]["efficiency"]["median"]
    random = results["random"]["efficiency"]["median"]
    rows = [
        [name, stats["efficiency"]["median"], stats["efficiency"]["min"],
         stats["efficiency"]["max"], f"{1000 * stats['seconds_per_epoch']['median']:.1f}",
         SAMPLERS[name]]
        for name, stats in results.items()
    ]  # fmt: skip
    table = common.markdown_table(
        ["batches", "real/padded (median)", "min", "max", "ms per epoch", "what"], rows
    )
    table += (
        f"\n\nSST-5 train: {len(lengths)} examples, prompt + answer {min(lengths)}-{max(lengths)}"
        f" tokens (mean {sum(lengths) / len(lengths):.1f}; tokenizer: {len(tokenizer)}-token BPE"
        f" trained on SST-5 train + prompts), batch {args.batch_size}, {args.epochs} epochs per"
        f" sampler.\nlength-grouped {grouped:.3f} vs random {random:.3f}: length-grouped epochs"
        f" hold {random / grouped:.1%} of the padded tokens of random ones (goal >= {GOAL}:"
        f" {'met' if grouped >= GOAL else 'MISSED'})."
    )
    return common.finish(
        args,
        "padding",
        table,
        {
            "tokenizer": str(model_path),
            "examples": len(lengths),
            "lengths": {
                "min": min(lengths),
                "max": max(lengths),
                "mean": sum(lengths) / len(lengths),
            },
            "samplers": results,
            "ratio_grouped_over_random": grouped / random,
            "goal": GOAL,
            "goal_met": grouped >= GOAL,
        },
    )


if __name__ == "__main__":
    main()
