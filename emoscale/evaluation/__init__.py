"""Evaluation: the papers' metrics (accuracy, macro/weighted F1, UA, WA) and the plots of a run.

May import: emoscale.errors only (and scikit-learn, matplotlib).
"""
