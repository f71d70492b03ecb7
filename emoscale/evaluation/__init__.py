"""Evaluation: the papers' metrics (accuracy, macro/weighted F1, UA, WA) and the plots of a run.

May import: emoscale.errors only (and scikit-learn, matplotlib). emotion_metrics.py is the same
metrics as a Hugging Face `evaluate` module; only `evaluate.load(EVALUATE_MODULE)` imports it.
"""

from pathlib import Path

# The path to give evaluate.load: emoscale's metrics, offline, with emoscale's definitions.
EVALUATE_MODULE = str(Path(__file__).with_name("emotion_metrics.py"))

__all__ = ["EVALUATE_MODULE"]
