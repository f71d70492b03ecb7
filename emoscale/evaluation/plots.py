"""The PNGs of a run folder: confusion matrix, and training-loss / dev-metric curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402


def confusion_matrix(matrix: list[list[int]], label_names: tuple[str, ...], path: Path) -> None:
    size = max(3.5, 0.7 * len(label_names) + 1.5)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    peak = max((max(row) for row in matrix), default=0)
    for row, values in enumerate(matrix):
        for column, value in enumerate(values):
            color = "white" if value > peak / 2 else "black"
            axes.text(column, row, str(value), ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def curves(history: list[dict], metric: str, path: Path) -> None:
    losses = [
        (record["step"], record["train_loss"]) for record in history if "train_loss" in record
    ]
    dev = [(record["step"], record["dev"][metric]) for record in history if "dev" in record]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    if losses:
        left.plot(*zip(*losses, strict=True), marker=".")
    left.set(title="training loss", xlabel="optimizer step")
    if dev:
        right.plot(*zip(*dev, strict=True), marker="o", color="tab:orange")
    right.set(title=f"dev {metric}", xlabel="optimizer step")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
