"""Using a finished run or a model folder: prediction and evaluation of a run, export of a merged
model, and converters that turn checkpoints of other formats into plain model folders.

May import: everything below it (errors, data, config, models, training, evaluation).
"""
