"""The one training loop, for every model family (Accelerate; single GPU, DDP or DeepSpeed ZeRO).

Read `train` top to bottom: prepare, the epoch loop (forward, backward, step), evaluation and
checkpoints at fixed points, early stopping, then the best checkpoint is reloaded and evaluated on
dev and, once, on test. Everything model-specific sits behind the family (models/family.py).
"""

from __future__ import annotations

import gc
import math
import os
import re
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from emoscale.config import RunConfig, rules
from emoscale.data.examples import Corpus
from emoscale.errors import EmoscaleError
from emoscale.models.adapters import trainable_parameters
from emoscale.models.family import ModelFamily
from emoscale.training import checkpoints, preemption, run_folder
from emoscale.training.bookkeeping import (
    Bookkeeping,
    Progress,
    finite_on_all_ranks,
    nonfinite_message,
)
from emoscale.training.distributed_eval import evaluate, shard_for_evaluation


def make_accelerator(config: RunConfig) -> Accelerator:
    # Several CPU processes need the gloo backend named, and (without DeepSpeed) cpu=True so that
    # Accelerate picks MULTI_CPU; otherwise every rank silently believes it is alone: gather is a
    # no-op and ranks train on the same batches (see ENVIRONMENT.md). A single process must get
    # neither: Accelerate would then look for a process group that does not exist.
    several_cpu_processes = (
        not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    )
    handlers = [InitProcessGroupKwargs(backend="gloo")] if several_cpu_processes else []
    deepspeed = rules.uses_deepspeed()
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


def train(
    config: RunConfig,
    family: ModelFamily,
    corpus: Corpus,
    run_dir: Path,
    accelerator: Accelerator,
    resume: bool,
):
    set_seed(config.seed)
    try:
        model = family.build_model()
    except (torch.OutOfMemoryError, RuntimeError) as error:
        # A size key far too large (lora.r=100000000, ptuning.num_virtual_tokens=10**8) asks
        # for tens of GB while the model is built: one line naming the cause, not a traceback.
        asked = re.search(r"allocate (\d+) bytes", str(error))
        if not isinstance(error, torch.OutOfMemoryError) and asked is None:
            raise
        size = f" ({int(asked.group(1)) / 1e9:.1f} GB at once)" if asked else ""
        raise EmoscaleError(
            f"building the {config.method_label} model ran out of memory{size}; check the size "
            "keys (lora.r, ptuning.num_virtual_tokens, fusion.dim, ...) and model.dtype"
        ) from None
    trainable = [p for p in model.parameters() if p.requires_grad]
    counts = trainable_parameters(model)  # before prepare: ZeRO-3 partitions the parameters
    splits = {name: corpus.split(name) for name in ("train", "dev", "test")}
    train_loader = family.dataloader(splits["train"], train=True, seed=config.seed, split="train")
    dev_loader = family.dataloader(splits["dev"], train=False, seed=config.seed, split="dev")
    test_loader = family.dataloader(splits["test"], train=False, seed=config.seed, split="test")
    train_batches = train_loader.batch_sampler  # set_epoch is called on it directly every epoch
    # Starting an epoch draws a seed from the loader's generator, by default the global RNG: then a
    # resumed run's dropout would differ from an uninterrupted one's (issue 6, exact resume).
    train_loader.generator = torch.Generator().manual_seed(config.seed)

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
    # Only now: a checkpoint that fails to load (a file missing, another model's tensors) left
    # run.json with a resume that never happened and a new TensorBoard file.
    truncated = getattr(family, "truncated", None)
    run_folder.write_start(run_dir, config, counts, accelerator, resume, truncated, corpus.info)

    def evaluate_dev() -> dict:
        with_invalid = config.eval.mode == "generate"
        return evaluate(accelerator, family, model, dev_loader, splits["dev"], with_invalid)[0]

    book = Bookkeeping(config, accelerator, run_dir, progress, evaluate_dev)

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
                    book.add_loss(loss, terms)
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                bar.update(1)
                if progress.step % config.train.log_every_steps == 0:
                    mean_loss = book.log_train_loss(scheduler.get_last_lr()[0])
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                every, save_every = config.eval.every_steps, config.train.save_every_steps
                if (every and progress.step % every == 0) and book.evaluate_and_checkpoint():
                    stop = True
                elif save_every and progress.step % save_every == 0:
                    book.save_checkpoint()
                if stop_signal.received(accelerator):  # all ranks agree: save this step, exit
                    latest = checkpoints.latest(run_dir)
                    if latest is None or latest.name != checkpoints.folder_name(progress.step):
                        book.save_checkpoint()
                    bar.close()
                    accelerator.print(stop_signal.report(run_dir, progress.step, accelerator))
                    accelerator.end_training()
                    raise stop_signal.exit()
                if stop or progress.step >= total_steps:
                    stop = True
                    break
            else:  # the epoch ran out
                progress.epoch, progress.batches_in_epoch = progress.epoch + 1, 0
                if not book.evaluated_at_current_step():
                    stop = book.evaluate_and_checkpoint() or stop
                stop = stop or progress.step >= total_steps
    if total_steps and not book.evaluated_at_current_step():
        book.evaluate_and_checkpoint()  # the last steps must be eligible as best, too
    train_seconds = time.perf_counter() - started

    # The best checkpoint on dev is the model (eval.select=last: the model after the last step);
    # test is evaluated once, with it.
    if config.eval.select == "best" and progress.best_checkpoint is not None:
        checkpoints.load(accelerator, run_dir / "checkpoints" / progress.best_checkpoint)
    with_invalid = config.eval.mode == "generate"
    results = {}
    for split, loader in (("dev", dev_loader), ("test", test_loader)):
        results[split] = evaluate(accelerator, family, model, loader, splits[split], with_invalid)
    state_dict = accelerator.get_state_dict(model) if trainable else None  # collective under ZeRO-3
    if accelerator.is_main_process and trainable:
        family.save_model(accelerator.unwrap_model(model), run_dir / "model", state_dict)
    accelerator.wait_for_everyone()  # the weights are whole before any rank may stop below
    # Every rank holds all results, so all stop together.
    run_folder.refuse_nonfinite_scores(results, splits, run_dir / "model" if trainable else None)
    if accelerator.is_main_process:
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
    return {split: result[0] for split, result in results.items()}
