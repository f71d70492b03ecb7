"""Why P-Tuning v2 did not learn on SmolLM2 (issue 14): the untrained prefix, measured.

For the frozen model alone and with an untrained 32-token prefix (`ptuning.init=random`: PEFT's
N(0, 1); `tokens`: the model's own keys/values of the prompt), on the same SST-2 sentences: the
answer loss of the training examples (the first loss a run sees), score-mode accuracy, and the
mean norm of one head's prefix key/value against the model's real ones (the `tokens` prefix is the
model's own keys/values of real text).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/ptuning_init_probe.py \
        --model runs/real_llm/smollm2-135m-instruct --data runs/real_llm/work/sst2 --json runs/probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from emoscale.config import load_config
from emoscale.data.registry import load_corpus
from emoscale.models import build_family
from emoscale.models.prefix_init import prefix_norms


def measure(overrides: list[str], examples: int) -> dict:
    config = load_config(overrides=overrides)
    corpus = load_corpus(config.data)
    family = build_family(config, corpus)
    torch.manual_seed(0)  # the same random prefix every time
    model = family.build_model().eval()
    train = corpus.split("train")[:examples]
    dev = corpus.split("dev")[:examples]
    losses, correct = [], 0
    with torch.no_grad():
        for batch in family.dataloader(train, train=True, seed=0, split="train"):
            losses.append(family.loss(model, batch).item() * len(batch["input_ids"]))
        for batch in family.dataloader(dev, train=False, seed=0, split="dev"):
            predicted, _ = family.predict(model, batch)
            correct += (predicted == batch["labels"]).sum().item()
    result = {"train_answer_loss": sum(losses) / len(train), "dev_accuracy": correct / len(dev)}
    if config.model.method == "ptuning_v2":
        norms = prefix_norms(model.lm)
        result["prefix_key_norm"] = sum(norms["keys"]) / len(norms["keys"])
        result["prefix_value_norm"] = sum(norms["values"]) / len(norms["values"])
        result["per_layer"] = norms
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="an SST-2 folder (stsa.binary.*)")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--json")
    args = parser.parse_args()
    common = [
        f"model.path={args.model}",
        "data.dataset=sst2",
        f"data.path={args.data}",
        "train.batch_size=16",
        "eval.batch_size=16",
        "data.max_length=128",
    ]
    sides = {
        "frozen model (no prefix)": ["model.method=none"],
        "prefix init=random (PEFT N(0,1))": ["model.method=ptuning_v2", "ptuning.init=random"],
        "prefix init=tokens (own keys/values)": ["model.method=ptuning_v2", "ptuning.init=tokens"],
    }
    results = {}
    print("| start | train answer loss (nats) | dev accuracy | prefix key norm | value norm |")
    print("|---|---|---|---|---|")
    for name, overrides in sides.items():
        found = results[name] = measure(common + overrides, args.examples)
        key, value = found.get("prefix_key_norm"), found.get("prefix_value_norm")
        cells = [f"{key:.2f}" if key else "-", f"{value:.2f}" if value else "-"]
        print(
            f"| {name} | {found['train_answer_loss']:.3f} | {found['dev_accuracy']:.3f} | "
            + " | ".join(cells)
            + " |",
            flush=True,
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
