"""What the training loop records besides gradients: progress (what a checkpoint must remember),
running loss means, dev evaluations with early stopping, checkpoints, and the non-finite loss check.
Kept beside the loop (trainer.py) so that the loop itself reads top to bottom."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from emoscale.config import RunConfig
from emoscale.data.examples import Example
from emoscale.evaluation.metrics import HEADLINE
from emoscale.training import checkpoints
from emoscale.training.progress import Progress


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


class Bookkeeping:
    """Running sums, log lines, dev evaluations, early stopping and checkpoints of one run.
    `evaluate_dev` returns the dev metrics of the model as it is now."""

    def __init__(
        self,
        config: RunConfig,
        accelerator: Accelerator,
        run_dir: Path,
        progress: Progress,
        evaluate_dev: Callable[[], dict],
    ):
        self.config, self.accelerator, self.run_dir = config, accelerator, run_dir
        self.progress, self.evaluate_dev = progress, evaluate_dev

    def add_loss(self, loss: torch.Tensor, terms: dict) -> None:
        """A finite batch's loss and named terms join the running sums of the next log line."""
        progress = self.progress
        progress.loss_sum += loss.detach().float().item()
        progress.loss_count += 1
        for name, value in terms.items():
            progress.term_sums[name] = progress.term_sums.get(name, 0.0) + float(value)

    def log_train_loss(self, lr: float) -> float:
        """The mean loss (and terms) since the last log line, over all ranks; returns the loss."""
        progress, count = self.progress, max(self.progress.loss_count, 1)
        means = mean_over_ranks(
            self.accelerator,
            {"loss": progress.loss_sum / count}
            | {name: total / count for name, total in progress.term_sums.items()},
        )
        mean_loss, term_means = means.pop("loss"), means
        progress.history.append({"step": progress.step, "train_loss": mean_loss} | term_means)
        self.accelerator.log(
            {"train/loss": mean_loss, "train/lr": lr}
            | {f"train/{name}": value for name, value in term_means.items()},
            step=progress.step,
        )
        progress.loss_sum, progress.loss_count, progress.term_sums = 0.0, 0, {}
        return mean_loss

    def save_checkpoint(self) -> None:
        accelerator, progress = self.accelerator, self.progress
        # progress.json is rank 0's: the running sums, the rank-local fields, become the means.
        sums = mean_over_ranks(accelerator, {"loss": progress.loss_sum} | progress.term_sums)
        progress.loss_sum, progress.term_sums = sums.pop("loss"), sums
        keep = self.config.train.keep_checkpoints
        checkpoints.save(accelerator, self.run_dir, progress.step, asdict(progress), keep)

    def evaluated_at_current_step(self) -> bool:
        history = self.progress.history
        last = history[-1] if history else {}
        return "dev" in last and last["step"] == self.progress.step

    def evaluate_and_checkpoint(self) -> bool:
        """Dev evaluation + checkpoint; True when early stopping says stop."""
        config, accelerator, progress = self.config, self.accelerator, self.progress
        metrics = self.evaluate_dev()
        value = metrics[config.eval.metric]
        progress.history.append({"step": progress.step, "dev": {k: metrics[k] for k in HEADLINE}})
        accelerator.log({f"dev/{k}": metrics[k] for k in HEADLINE}, step=progress.step)
        improved = value > progress.best_metric
        if improved:
            progress.best_metric, progress.evals_without_improvement = value, 0
            progress.best_checkpoint = checkpoints.folder_name(progress.step)
        else:
            progress.evals_without_improvement += 1
        self.save_checkpoint()
        accelerator.print(
            f"step {progress.step}: dev {config.eval.metric} {value:.4f}"
            + (" (best)" if improved else "")
        )
        patience = config.train.early_stopping_patience
        return patience is not None and progress.evals_without_improvement >= patience
