"""emoscale against the usual alternative: the same prompt-classification training with
transformers.Trainer + PEFT, in examples/s (issue 7, benchmark 2).

    python benchmarks/bench_vs_hf_trainer.py --json runs/bench/vs_hf_trainer.json
    python benchmarks/bench_vs_hf_trainer.py --quick          # a few seconds, tiny sizes

Every side: the tiny Llama of common.MODEL (hidden 256, 4 layers), LoRA r=8 / alpha 16 /
dropout 0.05 on q/v built by emoscale (the same PEFT model), one epoch over the first --train
examples of SST-5 train, batch 16, AdamW lr 2e-4, linear schedule with 10% warmup, clipping at
1.0, loss logged every 10 steps, the same seed.

- emoscale: emoscale.training.trainer.train (length-grouped batches, data.group_by_length=true, the default).
- trainer: transformers.Trainer with the usual causal-LM fine-tuning recipe (alpaca-lora style):
  every example tokenised as prompt + answer + EOS (the very token ids emoscale trains on), labels
  -100 on the prompt, DataCollatorForSeq2Seq padding each batch to its longest row (on the right),
  the default random sampler. Also with train_sampling_strategy="group_by_length" (transformers 5's
  spelling of group_by_length=True, since huggingface/transformers#43138): the fairest setting.
  `--trainer-variants ...,max_length` adds padding every row to data.max_length (256).
  report_to="none" (emoscale writes TensorBoard; the Trainer is spared that cost).

Timing: from the first step's forward to the end of the epoch (emoscale: its first loss to the
first prediction of its end-of-epoch evaluation; Trainer: on_step_begin of the first step to
on_epoch_end), so data loading and every step are in and model loading and evaluation are out;
in wall time and in the process' CPU time (with one torch thread, the work done, whatever else a
shared machine runs). Before timing, each side runs two untimed steps. Runs alternate (emoscale,
trainer, trainer grouped, emoscale, ...); the result is the ratio of the median examples/s. The
table also gives each side's real/padded tokens: on a subset this small, transformers'
LengthGroupedSampler sorts within megabatches of min(N // 64, 50) x 16 examples (80 for N = 320),
emoscale within 50 batches (800 examples). Goal: emoscale >= 1.1x the usual Trainer recipe.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import common
import torch
from accelerate.utils import set_seed
from transformers import (
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from emoscale.models import build_family

GOAL = 1.1
TRAINER_VARIANTS = {  # name -> (train_sampling_strategy, collator padding)
    "random": ("random", "longest"),
    "group_by_length": ("group_by_length", "longest"),
    "max_length": ("random", "max_length"),
}


class EpochTimer(TrainerCallback):
    """From the first step's start to the end of the (single) epoch."""

    def __init__(self):
        self.start: tuple[float, float] | None = None
        self.end: tuple[float, float] | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start = common.now()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.end = common.now()


class CountingCollator:
    """A collator that counts real and padded tokens of the batches it makes."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = {"real": 0, "padded": 0}

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens["real"] += int(batch["attention_mask"].sum())
        self.tokens["padded"] += batch["attention_mask"].numel()
        return batch


def trainer_rows(family, examples) -> list[dict]:
    """Prompt + answer token ids, labels on the answer only: what emoscale trains on."""
    rows = []
    for example in examples:
        prompt, answer = family.prompt_ids(example.text), family.answers[example.label]
        rows.append(
            {
                "input_ids": prompt + answer,
                "attention_mask": [1] * (len(prompt) + len(answer)),
                "labels": [-100] * len(prompt) + answer,
            }
        )
    return rows


def run_hf_trainer(config, family, rows, variant: str, output_dir: Path) -> dict:
    sampling, padding = TRAINER_VARIANTS[variant]
    set_seed(config.seed)
    lm = family.build_model().lm  # the PEFT model emoscale builds, without emoscale's wrapper
    tokenizer = AutoTokenizer.from_pretrained(config.model.path, padding_side="right")
    collator = CountingCollator(
        DataCollatorForSeq2Seq(
            tokenizer, padding=padding, max_length=config.data.max_length, label_pad_token_id=-100
        )
    )
    arguments = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.train.batch_size,
        num_train_epochs=1,
        learning_rate=config.train.lr,
        weight_decay=config.train.weight_decay,
        warmup_steps=config.train.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        lr_scheduler_type="linear",
        max_grad_norm=config.train.max_grad_norm,
        optim="adamw_torch",  # torch.optim.AdamW, as emoscale
        train_sampling_strategy=sampling,
        logging_steps=config.train.log_every_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        remove_unused_columns=False,
    )
    timer = EpochTimer()
    trainer = Trainer(
        model=lm,
        args=arguments,
        train_dataset=rows,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    shutil.rmtree(output_dir, ignore_errors=True)
    return {
        **common.rates(len(rows), timer.start, timer.end),
        "examples": len(rows),
        "padding_efficiency": collator.tokens["real"] / collator.tokens["padded"],
    }


def same_loss_check(config, family, examples) -> float:
    """|emoscale loss - Trainer-recipe loss| on one batch: both sides train the same objective."""
    set_seed(config.seed)
    model = family.build_model().eval()
    items = [
        {"prompt": family.prompt_ids(e.text), "answer": family.answers[e.label], "index": i}
        for i, e in enumerate(examples)
    ]
    tokenizer = AutoTokenizer.from_pretrained(config.model.path, padding_side="right")
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    with torch.no_grad():
        ours = family.loss(model, family._collate_train(items))
        theirs = model.lm(**collator(trainer_rows(family, examples))).loss
    return abs(ours.item() - theirs.item())


def main(argv: list[str] | None = None) -> dict:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, help="SST-5 train examples (default 320; quick 48)")
    parser.add_argument(
        "--trainer-variants",
        default="random,group_by_length",
        help=f"comma-separated, of {','.join(TRAINER_VARIANTS)}",
    )
    args = parser.parse_args(argv)
    common.start(args)
    quick = args.quick
    args.train = args.train or (48 if quick else 320)
    args.repeats = args.repeats or (1 if quick else 3)
    variants = args.trainer_variants.split(",")
    unknown = set(variants) - set(TRAINER_VARIANTS)
    if unknown:
        parser.error(
            f"unknown --trainer-variants {sorted(unknown)}; known: {list(TRAINER_VARIANTS)}"
        )
    shape = common.QUICK_MODEL if quick else common.MODEL

    model_path, corpus, config, work = common.sst5_lora_setup(
        args, shape, "vs-hf-trainer", "train.epochs=1"
    )
    family = build_family(config, corpus)
    rows = trainer_rows(family, corpus.split("train"))
    loss_difference = same_loss_check(config, family, corpus.split("train")[:16])

    def emoscale_run(run_corpus=corpus) -> dict:
        clock = common.run_emoscale_trainer(config, family, run_corpus, work / "run")
        examples = len(run_corpus.split("train"))
        return {**clock.measure(count=examples), "examples": examples}

    runs = {"emoscale": emoscale_run}
    for variant in variants:
        runs[f"trainer ({variant})"] = lambda variant=variant, rows=rows: run_hf_trainer(
            config, family, rows, variant, work / "hf"
        )
    if not quick:  # two untimed steps of each side first: lazy imports, first allocations
        warm = common.subset(corpus, 32, 16, 16)
        emoscale_run(warm)
        for variant in variants:
            run_hf_trainer(config, family, rows[:32], variant, work / "hf")
    print(f"model {model_path.name}; {len(rows)} examples, {-(-len(rows) // 16)} steps per run")
    results = common.alternate(runs, args.repeats)
    shutil.rmtree(work, ignore_errors=True)

    table, stats = common.compare(results, "examples", reference="emoscale")
    usual = (
        "trainer (random)" if "trainer (random)" in stats["ratios"] else f"trainer ({variants[0]})"
    )
    ratio = stats["ratios"][usual]
    verdict = {key: ratio[key] >= GOAL for key in common.CLOCKS}
    table += (
        f"\n\nemoscale / {usual}, ratio of medians: wall {ratio['per_s']:.3f}x, CPU time"
        f" {ratio['per_cpu_s']:.3f}x (goal >= {GOAL}x: wall {common.goal_word(verdict['per_s'])}, CPU"
        f" {common.goal_word(verdict['per_cpu_s'])}).\n{len(rows)} SST-5 train examples, batch 16, one epoch"
        f" per run. Same objective: |loss difference| on one batch {loss_difference:.1e}."
    )
    return common.finish(
        args,
        "vs_hf_trainer",
        table,
        {
            "model": {"path": str(model_path), **shape},
            "runs": results,
            **stats,
            "usual_recipe": usual,
            "goal": GOAL,
            "goal_met": verdict,
            "loss_difference_one_batch": loss_difference,
        },
    )


if __name__ == "__main__":
    main()
