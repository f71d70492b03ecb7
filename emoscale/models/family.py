"""The small, explicit interface between the trainer and a model family.

The trainer (emoscale/training/trainer.py) owns the loop; a family owns everything model-specific: building
the model, turning examples into batches, the loss, and predictions. Families are plain objects
that satisfy this Protocol; nothing is subclassed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import DataLoader

from emoscale.data.examples import Example


class ModelFamily(Protocol):
    label_names: tuple[str, ...]
    # train.class_weights: [k] weights of each label's training targets, or None (plain
    # cross-entropy); set by train.prepare_inputs from the training labels, read by loss()
    class_weights: torch.Tensor | None

    def build_model(self) -> torch.nn.Module:
        """The model, on CPU, with only the parameters that should train requiring grad."""

    def dataloader(self, examples: list[Example], train: bool, seed: int) -> DataLoader:
        """Batches for one split. Every batch carries `example_index` (positions in `examples`).
        Train loaders shuffle with `seed` and expose `set_epoch` on their batch sampler."""

    def loss(
        self, model: torch.nn.Module, batch: dict, terms: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The scalar training loss of one batch. With `terms`, the family may put named parts of
        the loss in it (scalars, detached); the trainer logs their means as train/<name>. The
        names must be the same for every batch on every rank (the trainer averages them across
        ranks in one collective), so let the config decide them, not the batch."""

    def predict(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted label index [B], per-label scores [B, k]); index -1 means no valid label.
        A family whose predictions come from generated text may also have
        `predict_answers(model, batch)`: the same and the answer texts (predict_with_answers)."""

    def save_model(self, model: torch.nn.Module, folder: Path) -> None:
        """Write what was trained (an adapter, or the weights) in a format others can load."""


def predict_with_answers(
    family: ModelFamily, model: torch.nn.Module, batch: dict
) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """family.predict() and, where the family generates its answers (the prompt LM's
    eval.mode=generate), the generated texts: written beside each prediction so that an answer
    that named no label can be read back. None where the family has none."""
    answering = getattr(family, "predict_answers", None)
    if answering is None:
        return (*family.predict(model, batch), None)
    return answering(model, batch)
