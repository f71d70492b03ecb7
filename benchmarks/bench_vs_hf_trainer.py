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

With `--model FOLDER` (a real causal LM, e.g. SmolLM2-135M-Instruct from `emoscale convert gguf`;
issue 14): SST-2 prompts (the first --train sentences, default 96: 6 steps), LoRA r=8 on every linear
projection, lr 1e-3, and a third side:
- minimal loop: a hand-written PEFT loop on the same PEFT model, batches (the family's sampler),
  answer-only loss over the full logits (`lm(...).logits`, as a user writes it), AdamW, schedule and
  clipping; no Accelerate, no bookkeeping, no evaluation.
Each side also reports seconds per optimizer step and its peak resident memory (sampled).

    OMP_NUM_THREADS=1 python benchmarks/bench_vs_hf_trainer.py --model runs/real_llm/smollm2-135m-instruct \
        --json runs/bench/vs_hf_trainer_smollm2.json

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
import torch.nn.functional as F
from accelerate.utils import set_seed
from transformers import (
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    get_scheduler,
)

from emoscale.models import build_family

# LoRA r=8 on every linear projection at lr 1e-3: what a 135M model needs (issue 14).
ALL_LINEAR = "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"

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


def run_minimal_loop(config, family, corpus) -> dict:
    """The loop a user writes by hand around the same PEFT model: no Accelerate, no bookkeeping."""
    set_seed(config.seed)
    lm = family.build_model().lm
    lm.train()
    loader = family.dataloader(corpus.split("train"), train=True, seed=config.seed, split="train")
    steps = len(loader.batch_sampler)
    trainable = [p for p in lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    scheduler = get_scheduler("linear", optimizer, int(config.train.warmup_ratio * steps), steps)
    times = [common.now()]
    for batch in loader:
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            batch["targets"][:, 1:].flatten(),
            ignore_index=-100,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        times.append(common.now())
    examples = len(corpus.split("train"))
    return {**common.rates(examples, times[0], times[-1]), "examples": examples, "steps": steps}


def with_peak_memory(run) -> dict:
    with common.PeakMemory() as memory:
        result = run()
    return {**result, "peak_rss_gib": memory.peak, "rss_before_gib": memory.start}


def step_table(results: dict[str, list[dict]], batch_size: int) -> str:
    """Seconds per optimizer step (median over runs) and peak resident memory of every side."""
    rows = []
    for name, runs in results.items():
        per_step = [run["seconds"] / (run.get("steps") or -(-run["examples"] // batch_size))
                    for run in runs]  # fmt: skip
        cpu_per_step = [
            run["cpu_seconds"] / (run.get("steps") or -(-run["examples"] // batch_size))
            for run in runs
        ]
        rows.append([name, common.median(per_step), common.median(cpu_per_step),
                     max(run["peak_rss_gib"] for run in runs),
                     min(run["rss_before_gib"] for run in runs)])  # fmt: skip
    headers = ["run", "s/step (wall)", "CPU-s/step", "peak RSS GiB", "RSS before GiB"]
    return common.markdown_table(headers, rows)


def real_model_setup(args, name: str):
    """--model: the first --train SST-2 sentences, LoRA on every linear projection, lr 1e-3."""
    import tempfile

    from emoscale.data import load_corpus

    model_path = Path(args.model).resolve()
    sst2 = common.config("data.dataset=sst2", f"data.path={Path(args.data) / 'sst'}")
    corpus = common.subset(load_corpus(sst2.data), args.train, 16, 16)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    config = common.config(
        f"model.path={model_path}", "model.method=lora", ALL_LINEAR, "train.lr=1e-3",
        "data.dataset=sst2", f"data.path={Path(args.data) / 'sst'}", "data.max_length=128",
        "train.batch_size=16", "eval.batch_size=16", "train.epochs=1", f"output_dir={work / 'run'}",
    )  # fmt: skip
    return model_path, corpus, config, work


def same_loss_check(config, family, examples) -> float:
    """|emoscale loss - Trainer-recipe loss| on one batch: both sides train the same objective."""
    set_seed(config.seed)
    model = family.build_model().eval()
    items = [
        {
            "prompt": family.prompt_ids(e.text),
            "answer": family.answers[e.label],
            "label": e.label,
            "index": i,
        }
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
    parser.add_argument(
        "--train", type=int, help="train examples (default 320; quick 48; --model 96)"
    )
    parser.add_argument(
        "--trainer-variants",
        help=f"comma-separated, of {','.join(TRAINER_VARIANTS)} (default random,group_by_length;"
        " --model: random)",
    )
    parser.add_argument(
        "--model", help="a real model folder: SST-2, LoRA on all linear layers, + a minimal loop"
    )
    args = parser.parse_args(argv)
    common.start(args)
    quick = args.quick
    args.train = args.train or (48 if quick else 96 if args.model else 320)
    args.repeats = args.repeats or (1 if quick else 2 if args.model else 3)
    args.trainer_variants = args.trainer_variants or (
        "random" if args.model else "random,group_by_length"
    )
    variants = args.trainer_variants.split(",")
    unknown = set(variants) - set(TRAINER_VARIANTS)
    if unknown:
        parser.error(
            f"unknown --trainer-variants {sorted(unknown)}; known: {list(TRAINER_VARIANTS)}"
        )
    shape = common.QUICK_MODEL if quick else common.MODEL

    if args.model:
        model_path, corpus, config, work = real_model_setup(args, "vs-hf-trainer")
        shape = {}
    else:
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
    if args.model:
        runs["minimal loop"] = lambda: run_minimal_loop(config, family, corpus)
    for variant in variants:
        runs[f"trainer ({variant})"] = lambda variant=variant, rows=rows: run_hf_trainer(
            config, family, rows, variant, work / "hf"
        )
    runs = {name: lambda run=run: with_peak_memory(run) for name, run in runs.items()}
    if not quick:  # two untimed steps of each side first: lazy imports, first allocations
        warm = common.subset(corpus, 32, 16, 16)
        emoscale_run(warm)
        for variant in variants:
            run_hf_trainer(config, family, rows[:32], variant, work / "hf")
    print(f"model {model_path.name}; {len(rows)} examples, {-(-len(rows) // 16)} steps per run")
    results = common.alternate(runs, args.repeats)
    shutil.rmtree(work, ignore_errors=True)

    table, stats = common.compare(results, "examples", reference="emoscale")
    table += "\n\n" + step_table(results, config.train.batch_size)
    usual = (
        "trainer (random)" if "trainer (random)" in stats["ratios"] else f"trainer ({variants[0]})"
    )
    ratio = stats["ratios"][usual]
    verdict = {key: ratio[key] >= GOAL for key in common.CLOCKS}
    data_name = f"SST-2, model {model_path.name}" if args.model else "SST-5"
    table += (
        f"\n\nemoscale / {usual}, ratio of medians: wall {ratio['per_s']:.3f}x, CPU time"
        f" {ratio['per_cpu_s']:.3f}x (goal >= {GOAL}x: wall {common.goal_word(verdict['per_s'])}, CPU"
        f" {common.goal_word(verdict['per_cpu_s'])}).\n{len(rows)} {data_name} train examples, batch 16, one epoch"
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
