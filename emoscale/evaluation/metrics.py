"""Classification metrics, computed locally with scikit-learn (evaluate's loaders need the hub).

UA (unweighted accuracy) is the mean per-class recall; WA (weighted accuracy) is accuracy over
utterances, as in speech emotion recognition papers. A prediction of -1 (generate mode: the answer
matched no label) counts as wrong for every metric.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

HEADLINE = ("accuracy", "macro_f1", "weighted_f1", "ua", "wa")


def classification_metrics(
    gold: list[int], pred: list[int], label_names: tuple[str, ...], with_invalid_rate: bool = False
) -> dict:
    labels = list(range(len(label_names)))
    gold_array, pred_array = np.asarray(gold), np.asarray(pred)
    accuracy = float((gold_array == pred_array).mean()) if len(gold) else 0.0
    precision, recall, f1, support = precision_recall_fscore_support(
        gold_array, pred_array, labels=labels, zero_division=0
    )
    present = support > 0  # UA averages over the classes that occur, as the papers do
    metrics = {
        "accuracy": accuracy,
        "macro_f1": float(
            f1_score(gold_array, pred_array, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(gold_array, pred_array, labels=labels, average="weighted", zero_division=0)
        ),
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "wa": accuracy,
        "num_examples": len(gold),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(gold_array, pred_array, labels=labels).tolist(),
    }
    if with_invalid_rate:
        metrics["invalid_rate"] = float((pred_array < 0).mean())
    return metrics
