"""Studies, many runs at once: the papers' recipes, cross-validation folds, sweeps, and the report
that sets a study beside the papers' tables.

May import: everything below it (errors, data, config, models, training, evaluation).
"""
