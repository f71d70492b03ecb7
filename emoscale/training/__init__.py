"""The training engine: the one loop (trainer.py) with its checkpoints, preemption handling, the
run folder it writes, what a resume may change (resuming.py), and the memory estimate of a run
(estimate.py, with run_shape.py for a run config's shape).

May import: emoscale.errors, emoscale.data, emoscale.config, emoscale.models, emoscale.evaluation.
"""
