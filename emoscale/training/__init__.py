"""The training engine: the one loop (trainer.py) with its checkpoints, preemption handling, the
run folder it writes, and the memory estimate of a run (estimate.py).

May import: emoscale.errors, emoscale.data, emoscale.config, emoscale.models, emoscale.evaluation.
"""
