"""The one training loop, for every model family (Accelerate; single GPU, DDP or DeepSpeed ZeRO).

Read `train` top to bottom: prepare, the epoch loop (forward, backward, step), evaluation and
checkpoints at fixed points, early stopping, then the best checkpoint is reloaded and evaluated on
dev and, once, on test. Everything model-specific sits behind the family (models/family.py).
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from emoscale.config import RunConfig
from emoscale.data.examples import Corpus, Example
from emoscale.errors import EmoscaleError
from emoscale.evaluation.metrics import HEADLINE, classification_metrics
from emoscale.models.family import ModelFamily
from emoscale.training import checkpoints, preemption, run_folder


def make_accelerator(config: RunConfig) -> Accelerator:
    # Several CPU processes need the gloo backend named, and (without DeepSpeed) cpu=True so that
    # Accelerate picks MULTI_CPU; otherwise every rank silently believes it is alone: gather is a
    # no-op and ranks train on the same batches (see ENVIRONMENT.md). A single process must get
    # neither: Accelerate would then look for a process group that does not exist.
    several_cpu_processes = (
        not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    )
    handlers = [InitProcessGroupKwargs(backend="gloo")] if several_cpu_processes else []
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    accelerator = Accelerator(
        gradient_accumulation_steps=config.train.grad_accum,
        mixed_precision=config.train.mixed_precision,
        log_with="tensorboard",
        project_dir="runs",  # replaced by the run folder (set_directories) before trackers start
        kwargs_handlers=handlers,
        cpu=several_cpu_processes and not deepspeed,
    )
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        if plugin.is_auto("train_micro_batch_size_per_gpu"):
            # Accelerate reads "auto" from DataLoader.batch_size, which a batch sampler leaves None.
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.train.batch_size
        if plugin.is_auto("gradient_clipping"):
            # DeepSpeed clips inside its engine (clip_grad_norm_ is a no-op there); 0.0 turns it off.
            plugin.deepspeed_config["gradient_clipping"] = config.train.max_grad_norm or 0.0
    return accelerator


@dataclass
class Progress:
    """What a checkpoint must remember besides weights, optimizer, scheduler and RNG."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of `epoch` already trained on
    best_metric: float = -math.inf
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    loss_sum: float = 0.0  # training loss since the last log line, so a resume logs the same mean
    loss_count: int = 0
    term_sums: dict = field(default_factory=dict)  # the family's named loss terms, summed likewise
    skipped_nonfinite: int = 0  # batches skipped for a nan/inf loss (train.skip_nonfinite)
    history: list = field(
        default_factory=list
    )  # {"step", "train_loss"} and {"step", "dev"} records


def shard_for_evaluation(loader: DataLoader, accelerator: Accelerator) -> DataLoader:
    """This rank's share of an evaluation loader's batches: every P-th batch, padded with repeats so
    that all ranks run the same number of forward passes (ZeRO-3 needs that). Duplicates are removed
    after gathering, by example index. (Accelerate's own sharding plus gather_for_metrics dropped
    real examples with our length-sorted batches in a 2-process test, so we do it explicitly.)"""
    batches, ranks = list(loader.batch_sampler), accelerator.num_processes
    per_rank = -(-len(batches) // ranks)
    mine = [
        batches[min(i * ranks + accelerator.process_index, len(batches) - 1)]
        for i in range(per_rank)
    ]
    return DataLoader(
        loader.dataset,
        batch_sampler=mine,
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
    )


def evaluate(
    accelerator: Accelerator, family: ModelFamily, model, loader, examples, with_invalid_rate: bool
):
    """Predict a split on all ranks; the main process gets every example exactly once."""
    model.eval()
    gathered = {}
    for batch in loader:
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        predicted, label_scores = family.predict(model, batch)
        local = (batch["example_index"], predicted, label_scores.float())
        local = accelerator.pad_across_processes(local, dim=0, pad_index=-1)
        for index, prediction, scores in zip(
            *(t.cpu() for t in accelerator.gather(local)), strict=True
        ):
            if index >= 0:
                gathered[int(index)] = (int(prediction), scores.tolist())
    model.train()
    if sorted(gathered) != list(range(len(examples))):
        raise RuntimeError(f"evaluation covered {len(gathered)} of {len(examples)} examples")
    predictions = [gathered[index][0] for index in range(len(examples))]
    scores = [gathered[index][1] for index in range(len(examples))]
    gold = [example.label for example in examples]
    metrics = classification_metrics(gold, predictions, family.label_names, with_invalid_rate)
    return metrics, predictions, scores


def mean_over_ranks(accelerator: Accelerator, values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks, in one collective (every rank has the same keys)."""
    if accelerator.num_processes == 1 or not values:
        return dict(values)
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=accelerator.device)
    averaged = accelerator.reduce(stacked, "mean").tolist()
    return dict(zip(values, averaged, strict=True))


def finite_on_all_ranks(accelerator: Accelerator, loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every rank: all ranks must skip or stop together."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if accelerator.num_processes > 1:
        finite = accelerator.reduce(finite, "sum") / accelerator.num_processes
    return finite.item() == 1.0


def nonfinite_message(
    accelerator: Accelerator, loss: torch.Tensor, batch: dict, examples: list[Example], step: int
) -> str:
    """One line naming the step, the value and the examples of every rank's nan/inf batch."""
    local = (
        [] if torch.isfinite(loss.detach()) else [(loss.item(), batch["example_index"].tolist())]
    )
    bad = gather_object(local) if accelerator.num_processes > 1 else local
    ids = [examples[index].id for _, indices in bad for index in sorted(indices)]
    return (
        f"non-finite loss ({bad[0][0]}) at step {step} in the batch of examples {ids}; "
        "set train.skip_nonfinite=true to skip such batches"
    )


def train(
    config: RunConfig,
    family: ModelFamily,
    corpus: Corpus,
    run_dir: Path,
    accelerator: Accelerator,
    resume: bool,
):
    set_seed(config.seed)
    model = family.build_model()
    trainable = [p for p in model.parameters() if p.requires_grad]
    splits = {name: corpus.split(name) for name in ("train", "dev", "test")}
    train_loader = family.dataloader(splits["train"], train=True, seed=config.seed, split="train")
    dev_loader = family.dataloader(splits["dev"], train=False, seed=config.seed, split="dev")
    test_loader = family.dataloader(splits["test"], train=False, seed=config.seed, split="test")
    train_batches = train_loader.batch_sampler  # set_epoch is called on it directly every epoch
    # Starting an epoch draws a seed from the loader's generator, by default the global RNG: then a
    # resumed run's dropout would differ from an uninterrupted one's (issue 6, exact resume).
    train_loader.generator = torch.Generator().manual_seed(config.seed)
    truncated = getattr(family, "truncated", None)
    run_folder.write_start(run_dir, config, model, accelerator, resume, truncated, corpus.info)

    batches_per_epoch = math.ceil(len(train_batches) / accelerator.num_processes)
    steps_per_epoch = max(1, batches_per_epoch // config.train.grad_accum)
    total_steps = config.train.max_steps or steps_per_epoch * config.train.epochs
    if trainable:
        optimizer = torch.optim.AdamW(
            trainable, lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        scheduler = get_scheduler(
            config.train.scheduler
            if config.train.scheduler != "constant"
            else "constant_with_warmup",
            optimizer,
            # Accelerate steps the prepared scheduler once per process per optimizer step.
            num_warmup_steps=int(config.train.warmup_ratio * total_steps)
            * accelerator.num_processes,
            num_training_steps=total_steps * accelerator.num_processes,
        )
        model, optimizer, train_loader, scheduler = accelerator.prepare(
            model, optimizer, train_loader, scheduler
        )
    else:  # zero-shot: nothing to train, evaluate only
        model, total_steps = accelerator.prepare(model), 0
    dev_loader, test_loader = (
        shard_for_evaluation(loader, accelerator) for loader in (dev_loader, test_loader)
    )

    progress = Progress()
    if resume:
        progress = Progress(**checkpoints.load_latest(accelerator, run_dir))
        accelerator.print(f"resumed from step {progress.step} (epoch {progress.epoch})")

    def save_checkpoint() -> None:
        # progress.json is rank 0's: the running sums, the rank-local fields, become the means.
        sums = mean_over_ranks(accelerator, {"loss": progress.loss_sum} | progress.term_sums)
        progress.loss_sum, progress.term_sums = sums.pop("loss"), sums
        keep = config.train.keep_checkpoints
        checkpoints.save(accelerator, run_dir, progress.step, asdict(progress), keep)

    def evaluated_at_current_step() -> bool:
        last = progress.history[-1] if progress.history else {}
        return "dev" in last and last["step"] == progress.step

    def evaluate_and_checkpoint() -> bool:
        """Dev evaluation + checkpoint; True when early stopping says stop."""
        metrics, _, _ = evaluate(
            accelerator, family, model, dev_loader, splits["dev"], config.eval.mode == "generate"
        )
        value = metrics[config.eval.metric]
        progress.history.append({"step": progress.step, "dev": {k: metrics[k] for k in HEADLINE}})
        accelerator.log({f"dev/{k}": metrics[k] for k in HEADLINE}, step=progress.step)
        improved = value > progress.best_metric
        if improved:
            progress.best_metric, progress.evals_without_improvement = value, 0
            progress.best_checkpoint = checkpoints.folder_name(progress.step)
        else:
            progress.evals_without_improvement += 1
        save_checkpoint()
        accelerator.print(
            f"step {progress.step}: dev {config.eval.metric} {value:.4f}"
            + (" (best)" if improved else "")
        )
        patience = config.train.early_stopping_patience
        return patience is not None and progress.evals_without_improvement >= patience

    bar = tqdm(
        total=total_steps,
        initial=progress.step,
        disable=not accelerator.is_main_process,
        desc="train",
    )
    model.train()
    stop = progress.step >= total_steps
    started = time.perf_counter()
    # SIGTERM/SIGINT: finish the step, save, exit (preemption.py). The bar closes on any exit, so
    # an error's one line is the last thing printed.
    with preemption.StopSignal() as stop_signal, bar:
        while not stop:
            train_batches.set_epoch(progress.epoch)
            epoch_loader = accelerator.skip_first_batches(train_loader, progress.batches_in_epoch)
            for batch in epoch_loader:
                with accelerator.accumulate(model):
                    terms = {}  # e.g. the fusion family's cross-entropy and MINE estimate
                    loss = family.loss(model, batch, terms)
                    finite = finite_on_all_ranks(accelerator, loss)
                    if finite:
                        accelerator.backward(loss)
                    elif config.train.skip_nonfinite:  # no gradient from this batch; counted
                        progress.skipped_nonfinite += 1
                    else:
                        raise EmoscaleError(
                            nonfinite_message(
                                accelerator, loss, batch, splits["train"], progress.step + 1
                            )
                        )
                    if accelerator.sync_gradients and config.train.max_grad_norm:
                        accelerator.clip_grad_norm_(trainable, config.train.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                progress.batches_in_epoch += 1
                if finite:
                    progress.loss_sum += loss.detach().float().item()
                    progress.loss_count += 1
                    for name, value in terms.items():
                        progress.term_sums[name] = progress.term_sums.get(name, 0.0) + float(value)
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                bar.update(1)
                if progress.step % config.train.log_every_steps == 0:
                    count = max(progress.loss_count, 1)
                    means = mean_over_ranks(
                        accelerator,
                        {"loss": progress.loss_sum / count}
                        | {name: total / count for name, total in progress.term_sums.items()},
                    )
                    mean_loss, term_means = means.pop("loss"), means
                    progress.history.append(
                        {"step": progress.step, "train_loss": mean_loss} | term_means
                    )
                    accelerator.log(
                        {"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}
                        | {f"train/{name}": value for name, value in term_means.items()},
                        step=progress.step,
                    )
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                    progress.loss_sum, progress.loss_count, progress.term_sums = 0.0, 0, {}
                every, save_every = config.eval.every_steps, config.train.save_every_steps
                if (every and progress.step % every == 0) and evaluate_and_checkpoint():
                    stop = True
                elif save_every and progress.step % save_every == 0:
                    save_checkpoint()
                if stop_signal.received(accelerator):  # all ranks agree: save this step, exit
                    latest = checkpoints.latest(run_dir)
                    if latest is None or latest.name != checkpoints.folder_name(progress.step):
                        save_checkpoint()
                    bar.close()
                    accelerator.print(stop_signal.report(run_dir, progress.step, accelerator))
                    accelerator.end_training()
                    raise stop_signal.exit()
                if stop or progress.step >= total_steps:
                    stop = True
                    break
            else:  # the epoch ran out
                progress.epoch, progress.batches_in_epoch = progress.epoch + 1, 0
                if not evaluated_at_current_step():
                    stop = evaluate_and_checkpoint() or stop
                stop = stop or progress.step >= total_steps
    if total_steps and not evaluated_at_current_step():
        evaluate_and_checkpoint()  # the last steps must be eligible as best, too
    train_seconds = time.perf_counter() - started

    # The best checkpoint on dev is the model; test is evaluated once, with it.
    if progress.best_checkpoint is not None:
        checkpoints.load(accelerator, run_dir / "checkpoints" / progress.best_checkpoint)
    with_invalid = config.eval.mode == "generate"
    results = {}
    for split, loader in (("dev", dev_loader), ("test", test_loader)):
        metrics, predictions, scores = evaluate(
            accelerator, family, model, loader, splits[split], with_invalid
        )
        results[split] = (metrics, predictions, scores)
    state_dict = accelerator.get_state_dict(model) if trainable else None  # collective under ZeRO-3
    if accelerator.is_main_process:
        if trainable:
            family.save_model(accelerator.unwrap_model(model), run_dir / "model", state_dict)
        run_folder.write_results(
            run_dir,
            config,
            corpus,
            family,
            results,
            progress.history,
            train_seconds,
            skipped_nonfinite=progress.skipped_nonfinite,
        )
    accelerator.wait_for_everyone()
    # Free the (DeepSpeed) engine while the process group still exists: on CPU, gloo threads torn
    # down at interpreter exit otherwise abort the process now and then, after a finished run.
    model = optimizer = scheduler = train_loader = None
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()
    return {split: metrics for split, (metrics, _, _) in results.items()}
