"""Trainer overhead: steps/s of emoscale's training loop against a minimal hand-written Accelerate
loop, on the same tiny model, the same batches and the same loss (issue 7, benchmark 1).

    python benchmarks/bench_trainer_overhead.py --json runs/bench/trainer_overhead.json
    python benchmarks/bench_trainer_overhead.py --quick          # a few seconds, tiny sizes

Both sides: the tiny Llama of common.MODEL (hidden 256, 4 layers, vocabulary 2000, so a step is
matrix work, not Python overhead), LoRA r=8 on q/v (emoscale's default), the first --train examples
of SST-5 train, batch 16, PromptLMFamily.dataloader (length-grouped batches) and .loss, AdamW.

- emoscale: `emoscale.training.trainer.train` itself, called as train.py calls it, with train.max_steps set
  below one epoch, so the only evaluation is the one the trainer always runs after the last step
  (dev and test hold 16 examples). Per step it does everything it does in a real run: accumulate,
  the non-finite loss check, clipping at 1.0, the linear schedule, loss.item(), the stop-signal
  check, tqdm, TensorBoard logging every 10 steps.
- minimal: accelerator.prepare(model, optimizer, loader); per batch: loss, accelerator.backward,
  optimizer.step, optimizer.zero_grad; nothing else.

Timing: a wrapper around the family notes when each loss is computed and when prediction starts.
A run's time is from its (--skip + 1)-th loss to the end of training (the first prediction of the
trainer's final evaluation; the end of the loop for the minimal loop): whole steps, data loading
included; building the model, evaluating and writing the run folder are not. Both wall time and
the process' CPU time are taken (with one torch thread, CPU time is the work done, whatever else
a shared machine runs). Runs alternate (emoscale, minimal, emoscale, ...); the result is the ratio
of the median steps/s. Goal: >= 0.95.
"""

from __future__ import annotations

import itertools
import shutil

import common
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from emoscale.models import build_family

GOAL = 0.95


def run_minimal(config, family, corpus, steps: int) -> common.Clock:
    clock = common.Clock(family)
    accelerator = Accelerator()
    set_seed(config.seed)  # the trainer's order: seed, model, loader, optimizer, prepare
    model = family.build_model()
    loader = family.dataloader(corpus.split("train"), train=True, seed=config.seed, split="train")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.train.lr)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    for batch in itertools.islice(loader, steps):
        loss = clock.loss(model, batch)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    clock.end = common.now()
    return clock


def main(argv: list[str] | None = None) -> dict:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, help="SST-5 train examples (default 512; quick 64)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 20; quick 3)")
    parser.add_argument("--skip", type=int, help="first steps not timed (default 2; quick 1)")
    args = parser.parse_args(argv)
    common.start(args)
    quick = args.quick
    args.train = args.train or (64 if quick else 512)
    args.steps = args.steps or (3 if quick else 20)
    args.skip = args.skip if args.skip is not None else (1 if quick else 2)
    args.repeats = args.repeats or (1 if quick else 5)
    shape = common.QUICK_MODEL if quick else common.MODEL
    if args.steps <= args.skip or args.steps * 16 > args.train:
        parser.error("need --skip < --steps and --steps * 16 <= --train (a run stays in one epoch)")

    model_path, corpus, config, work = common.sst5_lora_setup(
        args, shape, "trainer-overhead", f"train.max_steps={args.steps}"
    )
    family = build_family(config, corpus)
    clocks: dict[str, list[common.Clock]] = {"emoscale": [], "minimal": []}

    def emoscale_run() -> dict:
        clocks["emoscale"].append(common.run_emoscale_trainer(config, family, corpus, work / "run"))
        return clocks["emoscale"][-1].measure(args.skip)

    def minimal_run() -> dict:
        clocks["minimal"].append(run_minimal(config, family, corpus, args.steps))
        return clocks["minimal"][-1].measure(args.skip)

    print(f"model {model_path.name}; {args.steps} steps per run, {args.steps - args.skip} timed")
    runs = common.alternate({"emoscale": emoscale_run, "minimal": minimal_run}, args.repeats)
    shutil.rmtree(work, ignore_errors=True)

    table, stats = common.compare(runs, "steps", reference="emoscale")
    ratio = stats["ratios"]["minimal"]
    first, other = clocks["emoscale"][0], clocks["minimal"][0]
    same_batches = first.batches == other.batches
    verdict = {key: ratio[key] >= GOAL for key in common.CLOCKS}
    paired = {key: common.median(ratio[f"paired_{key}"]) for key in common.CLOCKS}
    table += (
        f"\n\nemoscale / minimal, ratio of medians: wall {ratio['per_s']:.3f}, CPU time"
        f" {ratio['per_cpu_s']:.3f} (goal >= {GOAL}: wall {common.goal_word(verdict['per_s'])}, CPU"
        f" {common.goal_word(verdict['per_cpu_s'])}); median of paired ratios: wall"
        f" {paired['per_s']:.3f}, CPU {paired['per_cpu_s']:.3f}.\n{runs['emoscale'][0]['steps']}"
        f" timed steps per run (batch 16, SST-5); same batches on both sides: {same_batches};"
        f" first loss {first.first_loss:.6f} (emoscale) vs {other.first_loss:.6f} (minimal)."
    )
    return common.finish(
        args,
        "trainer_overhead",
        table,
        {
            "model": {"path": str(model_path), **shape},
            "runs": runs,
            **stats,
            "goal": GOAL,
            "goal_met": verdict,
            "same_batches": same_batches,
            "first_loss": {"emoscale": first.first_loss, "minimal": other.first_loss},
        },
    )


if __name__ == "__main__":
    main()
