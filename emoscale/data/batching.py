"""Batch samplers: length-grouped batches for training (little padding), length-sorted for evaluation."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

# Group lengths inside windows of this many batches: sorted enough to cut padding to a few per cent,
# random enough that consecutive steps do not see the same lengths (the Trainer's "megabatch" idea).
WINDOW_BATCHES = 50


class LengthGroupedBatches:
    """Shuffled batches of similar length. Deterministic in (seed, epoch); call set_epoch each epoch."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True
    ):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.group_by_length:
            window = self.batch_size * WINDOW_BATCHES
            order = [
                index
                for start in range(0, len(order), window)
                for index in sorted(
                    order[start : start + window], key=self.lengths.__getitem__, reverse=True
                )
            ]
        batches = [
            order[start : start + self.batch_size]
            for start in range(0, len(order), self.batch_size)
        ]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: longest first, so a too-large batch fails at once, and little padding."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padding_efficiency(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Real tokens / padded tokens over a list of batches."""
    real = sum(lengths[index] for batch in batches for index in batch)
    padded = sum(len(batch) * max(lengths[index] for index in batch) for batch in batches)
    return real / padded
