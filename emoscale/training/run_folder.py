"""Everything a run writes into its folder, and the check that a folder is free to use.

<run>/config.yaml            resolved config            <run>/metrics.json       {"dev": {...}, "test": {...}}
<run>/run.json               versions, git commit, command, trainable parameters, data counts
<run>/predictions.jsonl      id, split, text, gold, pred, per-label scores (+ answer: generate mode)
<run>/report.md              the run as a row of the papers' tables
<run>/confusion_matrix.png   <run>/curves.png   <run>/history.jsonl
<run>/model/                 the adapter (PEFT format) or full weights     <run>/checkpoints/
<run>/.emoscale-run          the mark that emoscale made this folder (written first)
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from emoscale.config import RunConfig, save_config
from emoscale.errors import EmoscaleError
from emoscale.evaluation import plots
from emoscale.evaluation.metrics import HEADLINE
from emoscale.output_folder import (
    PROBE_PREFIX,
    check_creatable,
    nearest_existing,
    overlap_with_inputs,
)
from emoscale.training import removal

LIBRARIES = ("emoscale", "torch", "transformers", "peft", "accelerate", "deepspeed", "bitsandbytes")


# Every name emoscale writes into a run folder (above). A folder holding any other name is not ours:
# it is never deleted or written into (issue 12: `output_dir=~/thesis` lost the user's files).
OWN_NAMES = removal.OWN_NAMES
# Written first into every folder emoscale creates as a run folder. Names alone do not make a folder
# ours: a user's experiment folder may hold its own config.yaml, model/ or checkpoints/.
MARK = ".emoscale-run"


def check(run_dir: Path, resume: bool, overwrite: bool, config: RunConfig | None = None) -> bool:
    """Refuse to mix two runs in one folder, to write into an input folder or to replace anything
    emoscale did not write. Returns whether to resume: a run that died before its first checkpoint
    has nothing to resume and nothing worth keeping, so a rerun (or --resume) starts it afresh.
    Read-only: every rank may call it before any writes."""
    if resume and overwrite:
        raise EmoscaleError(
            "--resume and --overwrite contradict each other: --resume continues the run in "
            "output_dir, --overwrite replaces it; pass one"
        )
    _check_not_an_input(run_dir, config)
    _check_writable(run_dir)
    entries = _entries(run_dir)
    foreign = [name for name in entries if name not in OWN_NAMES]
    if entries and (foreign or not _made_by_emoscale(run_dir)):
        shown = foreign or entries
        listed = ", ".join(shown[:3]) + (f" (+{len(shown) - 3} more)" if len(shown) > 3 else "")
        raise EmoscaleError(
            f"output_dir {run_dir} is not an emoscale run folder (it holds {listed}); "
            "emoscale never replaces what it did not write: choose a new or empty folder"
        )
    from emoscale.training import checkpoints

    saved = checkpoints.saved(run_dir)  # on disk: a broken `latest` pointer must not hide them
    started = bool(saved) or (run_dir / "metrics.json").is_file()
    if not started:  # new, empty, or died before its first checkpoint: start it afresh
        if resume and not entries:
            raise EmoscaleError(f"--resume: {run_dir} holds no run to resume")
        return False
    if resume and saved and checkpoints.latest(run_dir) is None:
        pointer = run_dir / "checkpoints" / "latest"
        raise EmoscaleError(
            f"--resume: {pointer} names no saved checkpoint; write the name of one of "
            f"{', '.join(path.name for path in saved[-3:])} into it"
        )
    if not (resume or overwrite):
        raise EmoscaleError(
            f"output_dir {run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it"
        )
    return resume


def _made_by_emoscale(run_dir: Path) -> bool:
    """The mark, or (run folders of emoscale before the mark) a run.json as emoscale writes it."""
    if (run_dir / MARK).is_file():
        return True
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"versions", "command", "trainable_parameters"} <= set(
        record
    )


def _check_not_an_input(
    run_dir: Path, config: RunConfig | None, what: str = "output_dir", rule: str = "a run folder"
) -> None:
    """Never write into, or replace, a folder the run reads, the working directory or home.
    `what` names the key or flag, `rule` what must be apart (`--out` of export, not a run folder)."""
    nearest_existing(run_dir, what)  # first: resolve() fails on a link that loops
    target = run_dir.resolve()  # as it will be written: `~` is not expanded
    if config is not None:
        inputs = {
            "data.path": config.data.path,
            "model.path": config.model.path,
            "model.audio_path": config.model.audio_path,
            "model.text_path": config.model.text_path,
            "fusion.text_cache_dir": config.fusion.text_cache_dir,
        }
        found = overlap_with_inputs(target, inputs)
        if found:
            relation, key, value = found
            raise EmoscaleError(
                f"{what} {run_dir} {relation} {key} {value}; "
                f"{rule} must be apart from the folders {'it' if what == 'output_dir' else 'the run'} reads"
            )
    for name, folder in (("the working directory", Path.cwd()), ("the home folder", Path.home())):
        folder = folder.resolve()
        if target == folder or target in folder.parents:
            relation = "is" if target == folder else "contains"
            raise EmoscaleError(
                f"{what} {run_dir} {relation} {name}; choose a folder of its own, e.g. runs/NAME"
            )


def _entries(folder: Path) -> list[str]:
    """A folder's names, less the write probes of other ranks checking the same folder at the
    same moment (a ZeRO-2 resume once refused its own run folder for one)."""
    if not folder.is_dir():
        return []
    return sorted(
        entry.name for entry in folder.iterdir() if not entry.name.startswith(PROBE_PREFIX)
    )


def _check_writable(run_dir: Path) -> None:
    """output_dir, or the nearest folder that exists above it, must be a folder we can write in."""
    check_creatable(run_dir, "output_dir")


# What a cv or sweep writes in its parent folder besides the run folders (studies/*.py).
STUDY_NAMES = frozenset(
    {"cv.json", "cv.md", "sweep.json", "sweep.md", "study.json", "points", "logs", "slurm"}
)


def check_study_parent(parent: Path, config: RunConfig, kind: str) -> None:
    """A cv or sweep parent folder: apart from every input folder, writable, and holding only what
    a study writes (its summaries and records, run folders): anything else may be the user's."""
    if (parent / "config.yaml").exists():
        raise EmoscaleError(
            f"output_dir {parent} is a run folder; a sweep or cv writes its runs below a parent folder"
        )
    _check_not_an_input(parent, config)
    _check_writable(parent)
    entries = _entries(parent)
    foreign = [name for name in entries if not _written_by_a_study(parent / name)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else ""
        )
        raise EmoscaleError(
            f"output_dir {parent} is not an emoscale {kind} folder (it holds {shown}); "
            "emoscale never writes into a folder holding what it did not write: choose a new or empty folder"
        )


def _written_by_a_study(path: Path) -> bool:
    if path.name in STUDY_NAMES or (
        path.name.startswith(".") and path.name.endswith((".tmp", ".lock"))
    ):
        return True
    if path.is_symlink() or not path.is_dir():
        return False
    names = set(_entries(path))
    return not names or (names <= OWN_NAMES and _made_by_emoscale(path))


def check_apart(out: Path, config: RunConfig, run_dir: Path, flag: str = "--out") -> None:
    """What a command writes from a finished run (eval --out, export --out, predict --output) is
    apart from the run folder and from every folder the run reads (its corpus, its base model):
    a merged model or a predictions file inside them is a name the run or the model never had."""
    nearest_existing(out, flag)  # first: resolve() fails on a link that loops
    target = out.resolve()
    source = run_dir.resolve()
    if target == source or source in target.parents or target in source.parents:
        relation = (
            "is" if target == source else "is inside" if source in target.parents else "contains"
        )
        raise EmoscaleError(
            f"{flag} {out} {relation} the run folder {run_dir}; choose a folder apart from it"
        )
    _check_not_an_input(out, config, flag, flag.split(": ")[-1])  # "export: --out" -> "--out"
    check_creatable(out, flag)


def check_new_output(out: Path, config: RunConfig, run_dir: Path, flag: str = "--out") -> None:
    """A folder for a command's results (eval --out): new or empty, writable, apart from the run
    and from every folder the command reads."""
    check_apart(out, config, run_dir, flag)
    if _entries(out):
        raise EmoscaleError(f"{flag} {out} exists and is not an empty folder")


def create(run_dir: Path, resume: bool) -> None:
    """Main process only, once the model has loaded: nothing is written for a run that fails earlier.
    A fresh start removes only what emoscale wrote (check() refused a folder holding anything else)
    and keeps the folder itself."""
    try:
        if not resume and run_dir.is_dir():
            for entry in run_dir.iterdir():
                if entry.name in OWN_NAMES and entry.name != MARK:
                    removal.remove_own(entry, run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MARK).write_text("emoscale run folder: emoscale may replace what it holds\n")
    except OSError as error:
        raise EmoscaleError(f"output_dir {run_dir}: {error.strerror}") from None


def _versions() -> dict:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _git_commit() -> str | None:
    try:
        source = Path(__file__).resolve().parent
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def write_start(
    run_dir: Path,
    config: RunConfig,
    counts: dict,
    accelerator,
    resume: bool,
    truncated: dict | None = None,
    corpus_info=None,
) -> None:
    """The run folder's first files, once the model is built (and on --resume, once the
    checkpoint has loaded); `counts` from adapters.trainable_parameters."""
    from emoscale.models import base_model

    accelerator.print(
        f"trainable parameters: {counts['trainable']:,} of {counts['total']:,} ({100 * counts['share']:.4f}%)"
    )
    if truncated and sum(truncated.values()):  # never silently: printed now, counted in run.json
        accelerator.print(
            f"data.max_length={config.data.max_length}: truncated {sum(truncated.values())} texts "
            f"({', '.join(f'{split}: {count}' for split, count in sorted(truncated.items()))})"
        )
    if accelerator.is_main_process:
        create(run_dir, resume)
    accelerator.wait_for_everyone()
    accelerator.init_trackers("tensorboard")
    if resume and accelerator.is_main_process:
        from emoscale.training.resuming import record_resume

        record_resume(run_dir, config, accelerator)
    if not accelerator.is_main_process or resume:
        return
    save_config(config, run_dir / "config.yaml")
    record = {
        "command": sys.argv,
        "python": platform.python_version(),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "mixed_precision": accelerator.mixed_precision,
        "trust_remote_code": config.model.trust_remote_code,
        "trainable_parameters": counts,
    }
    key = "model.path" if config.model.path else "model.audio_path"
    base = config.model.path or config.model.audio_path
    if base is not None and (Path(base) / "config.json").is_file():
        record["base_model"] = {"path": base, "fingerprint": base_model.fingerprint(base, key)}
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    if corpus_info is not None:  # labels, label words, template: predict needs no corpus
        (run_dir / "corpus.json").write_text(json.dumps(asdict(corpus_info), indent=2))


def refuse_nonfinite_scores(results: dict, splits: dict, model_dir: Path | None) -> None:
    """A NaN label score would be written as a prediction and as invalid JSON (`NaN`) in
    predictions.jsonl: one line instead, naming the example; trained weights stay for a look."""
    for split, (_, _, scores, _) in results.items():
        for example, label_scores in zip(splits[split], scores, strict=True):
            bad = next((score for score in label_scores if not math.isfinite(score)), None)
            if bad is not None:
                kept = f"; the trained weights are in {model_dir}" if model_dir else ""
                raise EmoscaleError(
                    f"{split}: the model scored example {example.id!r} {bad} (not a finite "
                    f"number); metrics and predictions are not written{kept}"
                )


def write_results(
    run_dir: Path,
    config: RunConfig,
    corpus,
    family,
    results: dict,
    history: list,
    seconds: float,
    skipped_nonfinite: int = 0,
) -> None:
    metrics = {split: result[0] for split, result in results.items()}
    run = json.loads((run_dir / "run.json").read_text())
    run["train_seconds"] = round(seconds, 2)
    run["skipped_nonfinite_batches"] = skipped_nonfinite  # train.skip_nonfinite
    run["data"] = {
        "examples": {split: len(corpus.split(split)) for split in ("train", "dev", "test")},
        "dropped": dict(corpus.dropped),
        "truncated": dict(getattr(family, "truncated", {})),
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(run_dir / "predictions.jsonl", "w") as handle:
        for split, (_, predictions, scores, answers) in results.items():
            for index, example in enumerate(corpus.split(split)):
                record = prediction_record(
                    example, split, family.label_names, predictions[index], scores[index],
                    answers[index] if answers is not None else None,
                )  # fmt: skip
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(run_dir / "history.jsonl", "w") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in history)
    (run_dir / "report.md").write_text(report_row(config, corpus, metrics))
    plots.confusion_matrix(
        metrics["test"]["confusion_matrix"], family.label_names, run_dir / "confusion_matrix.png"
    )
    plots.curves(history, config.eval.metric, run_dir / "curves.png")


def prediction_record(
    example,
    split: str,
    names: tuple[str, ...],
    predicted: int,
    scores: list[float],
    answer: str | None = None,
) -> dict:
    """One line of predictions.jsonl (train and `emoscale eval --out`). In generate mode the
    model's own answer text is kept as `answer`: an invalid one (pred null) can be read back."""
    record = {
        "id": example.id,
        "split": split,
        "text": example.text,
        "gold": names[example.label],
        "pred": names[predicted] if predicted >= 0 else None,
        "scores": dict(zip(names, scores, strict=True)),
    }
    return record if answer is None else record | {"answer": answer}


def report_row(config: RunConfig, corpus, metrics: dict) -> str:
    test = metrics["test"]
    columns = " | ".join(f"{test[key]:.4f}" for key in HEADLINE)
    return (
        "| dataset | method | split | "
        + " | ".join(HEADLINE)
        + " |\n"
        + "|---" * (3 + len(HEADLINE))
        + "|\n"
        + f"| {corpus.info.name} | {config.method_label} | test | {columns} |\n"
    )
