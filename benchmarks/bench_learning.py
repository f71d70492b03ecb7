"""Does emoscale learn as well as a plain loop? The same model, examples, prompt, answer-only loss,
AdamW, linear warmup schedule, gradient clipping and batches, trained once by `emoscale train` and
once by the minimal loop below; test accuracy at equal steps side by side (issue 14).

    nice -n 10 python benchmarks/bench_learning.py --json runs/bench_learning.json
    nice -n 10 python benchmarks/bench_learning.py --init-range 0.2   # make-tiny's old default
    python benchmarks/bench_learning.py --model runs/real_llm/smollm2-135m-instruct --method lora \\
        --train 2000 --epochs 1 --lr 1e-3                               # (b) SmolLM2 + LoRA

Default (a): a from-scratch `make-tiny` Llama (its defaults), full fine-tuning on SST-2. Both
sides evaluate dev at each epoch end and test the best-dev weights, as emoscale does. The minimal
loop shares with emoscale only the token ids (the family's `prompt_ids` / `answers`) and the batch
order (the family's sampler), so what it learns differs only by how the training runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_files import SHARED_DATA
from transformers import get_scheduler

from emoscale.config import load_config
from emoscale.data import load_corpus
from emoscale.models import build_family
from emoscale.models.adapters import load_model

DATA = SHARED_DATA


def overrides(args, model: Path, data: Path, out: Path) -> list[str]:
    found = [
        f"model.path={model}", f"model.method={args.method}", "data.dataset=sst2",
        f"data.path={data}", f"train.lr={args.lr}", f"train.epochs={args.epochs}",
        "train.batch_size=16", "train.warmup_ratio=0.1", "train.scheduler=linear",
        "train.max_grad_norm=1.0", "eval.metric=accuracy", "eval.batch_size=32",
        "data.max_length=128", f"seed={args.seed}", f"output_dir={out}",
    ]  # fmt: skip
    if args.method == "lora":
        found.append(
            "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
        )
    return found


@torch.no_grad()
def accuracy(model, family, examples) -> float:
    """Score mode written out plainly: each label's answer log-likelihood after the prompt."""
    model.eval()
    right = 0
    for example in examples:
        prompt = family.prompt_ids(example.text)
        rows = [prompt + answer for answer in family.answers]
        width = max(len(row) for row in rows)
        ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        log_probs = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        scores = [
            sum(log_probs[i, len(prompt) - 1 + j, t].item() for j, t in enumerate(answer))
            for i, answer in enumerate(family.answers)
        ]
        right += int(max(range(len(scores)), key=scores.__getitem__) == example.label)
    model.train()
    return right / len(examples)


def minimal_loop(args, config, corpus, family) -> dict:
    torch.manual_seed(args.seed)
    model = load_model(config)  # the plain model (full) or PEFT's LoRA model on it
    model.train()
    loader = family.dataloader(corpus.split("train"), train=True, seed=args.seed, split="train")
    steps = len(loader.batch_sampler) * args.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    scheduler = get_scheduler("linear", optimizer, int(0.1 * steps), steps)
    best, best_state, dev_history = -1.0, None, []
    started = time.perf_counter()
    for epoch in range(args.epochs):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(),
                batch["targets"][:, 1:].flatten(),
                ignore_index=-100,
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        dev = accuracy(model, family, corpus.split("dev"))
        dev_history.append(dev)
        if dev > best:
            best, best_state = dev, copy.deepcopy({k: v for k, v in model.state_dict().items()})
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    return {"test_accuracy": accuracy(model, family, corpus.split("test")), "dev": dev_history,
            "steps": steps, "train_seconds": seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model folder; default: make-tiny on SST-2's text")
    parser.add_argument("--init-range", type=float, help="make-tiny initializer_range")
    parser.add_argument("--method", default="full", choices=["full", "lora"])
    parser.add_argument("--train", type=int, help="SST-2 training sentences (default: all)")
    parser.add_argument("--dev", type=int, default=300)
    parser.add_argument("--test", type=int, help="test sentences (default: all 1,821)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="runs/bench_learning")
    parser.add_argument("--json")
    parser.add_argument("--data", default=str(DATA), help="folder holding sst/stsa.binary.*")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work).resolve()
    data = work / "sst2"
    data.mkdir(parents=True, exist_ok=True)
    sizes = {"train": args.train, "dev": args.dev, "test": args.test}
    for split, count in sizes.items():
        lines = (Path(args.data) / "sst" / f"stsa.binary.{split}").read_text().splitlines()
        (data / f"stsa.binary.{split}").write_text("\n".join(lines[:count]) + "\n")
    model = Path(args.model) if args.model else None
    if model is None:
        from emoscale.tiny.lm import make_tiny

        model = work / f"tiny-init{args.init_range}"
        if not (model / "config.json").is_file():
            texts = (data / "stsa.binary.train").read_text().splitlines()
            extra = {} if args.init_range is None else {"initializer_range": args.init_range}
            make_tiny(model, [t.partition(" ")[2] for t in texts], **extra)
    out = work / f"emoscale-{model.name}-{args.method}"
    argv = overrides(args, model, data, out)
    config = load_config(overrides=argv)
    corpus = load_corpus(config.data)
    family = build_family(config, corpus)

    from emoscale import train

    started = time.perf_counter()
    assert train.main(argv + ["--overwrite"]) == 0
    emoscale_seconds = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    history = [
        r["dev"]["accuracy"] for r in map(json.loads, open(out / "history.jsonl")) if "dev" in r
    ]
    side = {"emoscale": {"test_accuracy": metrics["test"]["accuracy"], "dev": history,
                         "train_seconds": emoscale_seconds}}  # fmt: skip
    side["minimal loop"] = minimal_loop(args, config, corpus, family)
    print(f"model {model.name}, {args.method}, {len(corpus.split('train'))} train sentences, "
          f"{args.epochs} epochs, lr {args.lr}, test {len(corpus.split('test'))}")  # fmt: skip
    print("| side | test accuracy | dev accuracy per epoch |\n|---|---|---|")
    for name, result in side.items():
        dev = ", ".join(f"{d:.3f}" for d in result["dev"])
        print(f"| {name} | {result['test_accuracy']:.4f} | {dev} |")
    gap = side["minimal loop"]["test_accuracy"] - side["emoscale"]["test_accuracy"]
    print(f"minimal loop - emoscale: {gap:+.4f} (goal: at most +0.01)")
    result = {"args": vars(args), "sides": side}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
