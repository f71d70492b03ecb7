"""Evaluation on every rank: each rank predicts its share of a split's batches, and the main
process gets every example exactly once (the trainer's dev/test evaluation and `emoscale eval`)."""

from __future__ import annotations

from accelerate import Accelerator
from torch.utils.data import DataLoader

from emoscale.evaluation.metrics import classification_metrics
from emoscale.models.family import ModelFamily


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
