"""Evaluation on every rank: each rank predicts its share of a split's batches, and the main
process gets every example exactly once (the trainer's dev/test evaluation and `emoscale eval`)."""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.utils.data import DataLoader

from emoscale.evaluation.metrics import classification_metrics
from emoscale.models.family import ModelFamily, predict_with_answers


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
    """Predict a split on all ranks; the main process gets every example exactly once.
    Returns (metrics, predicted label indices, per-label scores, generated answer texts or None
    where the family scores labels instead of generating them)."""
    model.eval()
    gathered, answers = {}, {}
    for batch in loader:
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        predicted, label_scores, texts = predict_with_answers(family, model, batch)
        local = (batch["example_index"], predicted, label_scores.float())
        local = accelerator.pad_across_processes(local, dim=0, pad_index=-1)
        for index, prediction, scores in zip(
            *(t.cpu() for t in accelerator.gather(local)), strict=True
        ):
            if index >= 0:
                gathered[int(index)] = (int(prediction), scores.tolist())
        if texts is not None:  # strings do not fit a tensor gather; every rank joins this one
            mine = list(zip(batch["example_index"].tolist(), texts, strict=True))
            answers.update(gather_object(mine))
    model.train()
    if sorted(gathered) != list(range(len(examples))):
        raise RuntimeError(f"evaluation covered {len(gathered)} of {len(examples)} examples")
    predictions = [gathered[index][0] for index in range(len(examples))]
    scores = [gathered[index][1] for index in range(len(examples))]
    texts = [answers[index] for index in range(len(examples))] if answers else None
    gold = [example.label for example in examples]
    metrics = classification_metrics(gold, predictions, family.label_names, with_invalid_rate)
    return metrics, predictions, scores, texts
