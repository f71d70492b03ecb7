"""emoscale's metrics as a Hugging Face `evaluate` module, loaded offline by its path:

    import evaluate
    from emoscale.evaluation import EVALUATE_MODULE
    metric = evaluate.load(EVALUATE_MODULE, label_names=["neutral", "joy", "sadness"])
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 2])
    # {'accuracy': 0.667, 'macro_f1': ..., 'weighted_f1': ..., 'ua': ..., 'wa': ..., ...}

`evaluate.load("accuracy")` fetches its script from the hub; this file needs nothing but an
installed emoscale. It computes with `classification_metrics` itself, so a Trainer's
compute_metrics, an `evaluate.Evaluator` or `add_batch` across processes give exactly the numbers
emoscale writes to metrics.json. emoscale never imports this file (importing `evaluate` pulls in
transformers.pipelines, about 20 s on 2 busy cores): only `evaluate.load` does.
"""

from __future__ import annotations

import datasets
import evaluate

from emoscale.evaluation.metrics import classification_metrics

_DESCRIPTION = """
Accuracy, macro-F1, weighted-F1, UA (mean recall over the classes present in the references) and
WA (accuracy over utterances), with per-class precision/recall/F1/support and the confusion matrix;
the definitions of emoscale.evaluation.metrics.classification_metrics.
"""

_INPUTS = """
Args:
    predictions (list of int): predicted class indices; -1 (no label matched) counts as wrong.
        Any other index outside the label set is an error (it would silently leave the confusion
        matrix, or without label_names add classes).
    references (list of int): gold class indices, each inside the label set.
    label_names (list of str, optional): the label set, in index order. Classes that occur in
        neither list still count in macro/weighted F1 and the confusion matrix, so pass it (here or
        to evaluate.load) to get emoscale's numbers; without it the classes are 0..the largest
        reference (predictions never add a class).
    with_invalid_rate (bool, optional): also return the share of predictions equal to -1.
Returns:
    accuracy, macro_f1, weighted_f1, ua, wa, num_examples, per_class, confusion_matrix
    (and invalid_rate when asked).
"""


class EmotionMetrics(evaluate.Metric):
    def __init__(self, label_names: list[str] | None = None, **kwargs) -> None:
        # Given at load time, the label set reaches every compute(), also one an Evaluator makes.
        self.label_names = tuple(label_names) if label_names is not None else None
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self,
        predictions: list[int],
        references: list[int],
        label_names: list[str] | None = None,
        with_invalid_rate: bool = False,
    ) -> dict:
        names = tuple(label_names) if label_names is not None else self.label_names
        hint = ""
        if names is None:  # the gold labels define the classes; a stray prediction must not
            names = tuple(str(index) for index in range(max(references, default=-1) + 1))
            hint = " (without label_names the labels are the indices in the references)"
        out_of_range = [value for value in references if not 0 <= value < len(names)]
        if out_of_range:
            raise ValueError(
                f"reference {out_of_range[0]} is not an index into the {len(names)} labels {list(names)}"
            )
        out_of_range = [value for value in predictions if not -1 <= value < len(names)]
        if out_of_range:
            raise ValueError(
                f"prediction {out_of_range[0]} is not -1 (no label matched) or an index into the "
                f"{len(names)} labels {list(names)}{hint}"
            )
        return classification_metrics(
            list(references), list(predictions), names, with_invalid_rate=with_invalid_rate
        )
