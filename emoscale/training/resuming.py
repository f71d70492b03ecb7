"""What a resumed run may change, checked before any model loads, and the record of each resume.

A resumed run must be the run it continues: the scheduler is built from the total steps, the data
order and the checkpoint's tensors depend on the config. Only RESULT_NEUTRAL keys may change on
`--resume`; each change is printed and kept in run.json's `resumes` (config.yaml stays the config
the run started with).
"""

from __future__ import annotations

import json
from pathlib import Path

from emoscale.config import RunConfig, load_config
from emoscale.data.encoding import read_json
from emoscale.errors import EmoscaleError

# Keys a resumed run may change: none of them changes a weight, a metric or a prediction.
# output_dir may have been named automatically. Every other changed key is refused.
RESULT_NEUTRAL = {
    "output_dir": "the run folder is the one being resumed",
    # Clips are decoded to the same samples whether kept or not (data/audio.py).
    "data.audio_cache_mb": "only how many decoded clips are kept in memory",
    # Batches are drawn in the main process and a training crop comes from (seed, epoch, index)
    # alone (data/audio.py), so workers change speed, not data.
    "train.num_workers": "only how many processes prepare batches",
    "train.log_every_steps": "only how often the training loss is logged",
    # Every evaluation saves a checkpoint, and the best is always kept: the choice of the best
    # (eval.every_steps, eval.metric) is what changes results, and stays fixed.
    "train.save_every_steps": "only how often a checkpoint is saved between evaluations",
    "train.keep_checkpoints": "only how many older checkpoints stay on disk",
}


def changed_keys(run_dir: Path, config: RunConfig) -> list[tuple[str, object, object]]:
    """(key, given value, the run's value) for every key whose value in `config` differs from the
    run's config.yaml, in schema order. A key newer than the run (absent from its config.yaml)
    keeps its default. Also used by sweep/cv to keep a finished point only with its own config."""
    saved = _flat(load_config(run_dir / "config.yaml").model_dump(mode="json"))
    given = _flat(config.model_dump(mode="json"))
    return [
        (key, value, saved[key]) for key, value in given.items() if saved.get(key, value) != value
    ]


def changed_key(run_dir: Path, config: RunConfig) -> tuple[str, object, object] | None:
    """The first changed key that can change results (not RESULT_NEUTRAL), or None."""
    changed = [
        change for change in changed_keys(run_dir, config) if change[0] not in RESULT_NEUTRAL
    ]
    return changed[0] if changed else None


def resume_changes(run_dir: Path, config: RunConfig) -> dict[str, dict]:
    """{key: {"was": the run's value, "now": the given one}} for every changed result-neutral
    key (RESULT_NEUTRAL but output_dir); any other changed key is one EmoscaleError line."""
    changes = {}
    for key, value, used in changed_keys(run_dir, config):
        if key not in RESULT_NEUTRAL:
            raise EmoscaleError(
                f"--resume: config key {key!r} is {value!r} but the run used {used!r}; "
                f"resume with --config {run_dir / 'config.yaml'} (only "
                f"{', '.join(sorted(set(RESULT_NEUTRAL) - {'output_dir'}))} may change)"
            )
        if key != "output_dir":
            changes[key] = {"was": used, "now": value}
    return changes


def check_resume(run_dir: Path, config: RunConfig) -> None:
    """A resumed run must be the same run: its config (the scheduler, the data order and the
    checkpoint's tensors depend on it) but for RESULT_NEUTRAL keys, and its base model; and its
    latest checkpoint must be readable. Read-only, before any model loads."""
    from emoscale.models import base_model
    from emoscale.training import checkpoints

    resume_changes(run_dir, config)
    run_file = run_dir / "run.json"  # read strictly: a resume adds to it (record_resume)
    if run_file.is_file() and not isinstance(read_json(run_file, finite=False), dict):
        raise EmoscaleError(f"{run_file}: expected a JSON object (the run's record)")
    base = config.model.path or config.model.audio_path
    if base is not None:
        base_model.check(run_dir, base)
    checkpoints.check_readable(checkpoints.latest(run_dir))  # the user's mistakes above first


def _flat(dump: dict) -> dict:
    return {
        f"{section}.{key}" if isinstance(values, dict) else section: value
        for section, values in dump.items()
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)])
    }


def record_resume(run_dir: Path, config: RunConfig, accelerator) -> None:
    """run.json's `resumes`: one entry per --resume, with the checkpoint it continued from and the
    result-neutral keys it changed; config.yaml stays the config the run started with."""
    from emoscale.training import checkpoints

    changes = resume_changes(run_dir, config)
    for key, change in changes.items():
        accelerator.print(
            f"--resume: {key} changed {change['was']!r} -> {change['now']!r} "
            f"({RESULT_NEUTRAL[key]}; results do not change)"
        )
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        return  # a run from before run.json: nothing to add to
    run = read_json(run_file, finite=False)
    latest = checkpoints.latest(run_dir)
    run.setdefault("resumes", []).append(
        {"checkpoint": latest.name if latest else None, "changed": changes}
    )
    run_file.write_text(json.dumps(run, indent=2))
