"""emoscale's metrics as an `evaluate` module: loaded offline by path, the same numbers exactly."""

from __future__ import annotations

import json

import evaluate
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from emoscale import train
from emoscale.config import load_config
from emoscale.evaluation import EVALUATE_MODULE
from emoscale.evaluation.metrics import classification_metrics
from emoscale.tiny import demo

CASES = {
    "binary": (["neg", "pos"], [0, 1, 1, 0, 1], [0, 1, 0, 0, 0]),
    "a class never in references": (["a", "b", "c"], [0, 0, 1, 1], [0, 2, 1, 1]),
    "a class in neither list": (["a", "b", "c", "d"], [0, 1, 2, 2], [0, 1, 1, 2]),
    "unmatched answers (-1)": (["a", "b", "c"], [0, 1, 2, 2, 1], [0, -1, 2, -1, 1]),
    "all wrong, one class": (["x", "y"], [1, 1, 1], [0, 0, 0]),
}


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(EVALUATE_MODULE, keep_in_memory=True)


@pytest.mark.parametrize("case", CASES)
def test_compute_equals_classification_metrics(metric, case):
    names, gold, pred = CASES[case]
    expected = classification_metrics(gold, pred, tuple(names), with_invalid_rate=True)
    got = metric.compute(
        predictions=pred, references=gold, label_names=names, with_invalid_rate=True
    )
    assert got == expected
    assert set(got) >= {"accuracy", "macro_f1", "weighted_f1", "ua", "wa", "confusion_matrix"}


def test_label_names_at_load_time_and_batches_across_calls(tmp_path):
    names, gold, pred = CASES["a class in neither list"]
    metric = evaluate.load(EVALUATE_MODULE, label_names=names, cache_dir=str(tmp_path))
    for start in range(0, len(gold), 3):  # as an eval loop adds them, through the Arrow cache
        metric.add_batch(predictions=pred[start : start + 3], references=gold[start : start + 3])
    assert metric.compute() == classification_metrics(gold, pred, tuple(names))


def test_without_label_names_the_classes_are_the_reference_indices(metric):
    _, gold, pred = CASES["a class in neither list"]
    got = metric.compute(predictions=pred, references=gold)
    assert got == classification_metrics(gold, pred, ("0", "1", "2"))
    # ... which drops class 3 from macro-F1: the reason to pass label_names.
    assert got["macro_f1"] != classification_metrics(gold, pred, ("a", "b", "c", "d"))["macro_f1"]


def test_a_reference_outside_the_label_set_is_refused(metric):
    with pytest.raises(
        ValueError, match=r"^reference 3 is not an index into the 2 labels \['a', 'b'\]$"
    ):
        metric.compute(predictions=[0], references=[3], label_names=["a", "b"])


def test_a_prediction_outside_the_label_set_is_refused(metric):
    """Not dropped from the confusion matrix (with label_names), not a new class (without)."""
    with pytest.raises(
        ValueError,
        match=r"^prediction 5 is not -1 \(no label matched\) or an index into the 3 labels "
        r"\['a', 'b', 'c'\]$",
    ):
        metric.compute(
            predictions=[0, -1, 2, 5], references=[0, 1, 2, 2], label_names=["a", "b", "c"]
        )
    with pytest.raises(
        ValueError,
        match=r"^prediction -2 is not -1 \(no label matched\) or an index into the 3 labels "
        r"\['a', 'b', 'c'\]$",
    ):
        metric.compute(predictions=[-2, 0, 0], references=[0, 1, 2], label_names=["a", "b", "c"])
    with pytest.raises(
        ValueError,
        match=r"^prediction 9 is not -1 \(no label matched\) or an index into the 2 labels "
        r"\['0', '1'\] \(without label_names the labels are the indices in the references\)$",
    ):
        metric.compute(predictions=[0, 1, 9], references=[0, 1, 1])
    got = metric.compute(predictions=[0, -1, 1], references=[0, 1, 1])  # -1: a wrong answer
    assert list(got["per_class"]) == ["0", "1"] and got["accuracy"] == pytest.approx(2 / 3)


def test_a_runs_predictions_score_as_its_metrics_json(run_overrides, tmp_path):
    """A zero-shot run on a DatasetDict corpus (data.dataset=hf); its predictions.jsonl through
    evaluate gives metrics.json's numbers exactly."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=demo.LABELS)})
    sizes = {"train": 8, "validation": 24, "test": 48}
    splits = {}
    for seed, (split, size) in enumerate(sizes.items()):
        texts, labels = zip(*demo.sentences(size, seed), strict=True)
        rows = {"text": list(texts), "label": [demo.LABELS.index(label) for label in labels]}
        splits[split] = Dataset.from_dict(rows, features=features)
    DatasetDict(splits).save_to_disk(str(tmp_path / "demo_hf"))
    overrides = [o for o in run_overrides if not o.startswith(("data.", "train.epochs"))]
    overrides += ["data.dataset=hf", f"data.path={tmp_path / 'demo_hf'}", "model.method=none"]
    run_dir, metrics = train.run(load_config(overrides=overrides))

    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    test = [record for record in map(json.loads, lines) if record["split"] == "test"]
    metric = evaluate.load(EVALUATE_MODULE, label_names=demo.LABELS, keep_in_memory=True)
    got = metric.compute(
        predictions=[demo.LABELS.index(record["pred"]) for record in test],
        references=[demo.LABELS.index(record["gold"]) for record in test],
    )
    assert len(test) == 48
    for key in ("accuracy", "macro_f1", "weighted_f1", "ua", "wa", "confusion_matrix"):
        assert got[key] == metrics["test"][key], key
