"""Train and evaluate one run: the entry point.

    accelerate launch emoscale/train.py                                  # the built-in demo (CPU is fine)
    accelerate launch emoscale/train.py --config run.yaml train.lr=3e-4  # a YAML config + overrides
    accelerate launch --config_file accelerate_configs/zero2.yaml emoscale/train.py --config run.yaml
    python -m emoscale.train ...   |   emoscale train ...               # the same, one process

Everything that can be wrong with the input (config keys, model folder, data files and labels) is
checked before the model loads; such an error prints one line and exits with code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # `accelerate launch emoscale/train.py` runs this file as a script: put the repository root, not
    # emoscale/, on sys.path so `import emoscale` works from a clone and no module here shadows a library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import time  # noqa: E402

from emoscale import library_logs  # noqa: E402
from emoscale.config import RunConfig, load_config  # noqa: E402
from emoscale.errors import DataError, EmoscaleError, OneLineParser  # noqa: E402


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or OneLineParser(prog="emoscale train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML run config")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its latest checkpoint",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished or broken run in output_dir"
    )
    return parser


def prepare_inputs(config: RunConfig):
    """All input checks that need files but no model weights: model folder, corpus, tokenizer."""
    from emoscale.data import load_corpus
    from emoscale.models import build_family
    from emoscale.models.class_weights import training_class_weights

    corpus = load_corpus(config.data)
    _check_train_classes(config, corpus)
    family = build_family(config, corpus)
    # only training weighs its loss: eval and predict build the family from the same config
    # without a train split
    family.class_weights = training_class_weights(config, corpus, getattr(family, "answers", None))
    return corpus, family


def _check_train_classes(config: RunConfig, corpus) -> None:
    """A train split of one class teaches nothing: the run would train, predict that class and
    report its share as accuracy (issue 12). Classes of data.labels absent from train are allowed
    (a rare class may be missing from a small train split)."""
    if config.model.family == "prompt_lm" and config.model.method == "none":
        return  # nothing is trained
    labels = {example.label for example in corpus.split("train") if example.label >= 0}
    if len(labels) == 1:
        only = corpus.info.label_names[labels.pop()]
        raise DataError(
            f"data.path {config.data.path}: every train example is labelled {only!r}; "
            "a classifier needs at least two classes to learn from"
        )


def prepare_run(config: RunConfig, resume: bool = False, overwrite: bool = False):
    """Everything before training: inputs checked, the accelerator, the run folder named and
    checked. Returns (corpus, family, accelerator, run_dir, resume); resume is False for a run
    that died before its first checkpoint (it starts afresh)."""
    from accelerate.utils import broadcast_object_list

    from emoscale.training import resuming, run_folder, trainer

    accelerator = trainer.make_accelerator(config)
    # One folder for all ranks: the main process names it and tells the others.
    name = [
        config.output_dir
        or f"runs/{config.data.dataset}-{config.method_label}-{time.strftime('%Y%m%d-%H%M%S')}"
    ]
    run_dir = Path(broadcast_object_list(name)[0])
    asked_to_resume = resume
    resume = run_folder.check(run_dir, resume, overwrite, config)
    if asked_to_resume and not resume:
        accelerator.print(f"--resume: {run_dir} has no checkpoint yet; starting the run afresh")
    if resume:  # the same config and base model, or the run would not continue exactly
        resuming.check_resume(run_dir, config)
    # The folder first (cheap, and the one check that protects the user's files), then the inputs.
    corpus, family = prepare_inputs(config)
    # TensorBoard logs go in the run folder, which only now has its name.
    accelerator.project_configuration.project_dir = (
        accelerator.project_configuration.logging_dir
    ) = str(run_dir)
    return corpus, family, accelerator, run_dir, resume


def run(config: RunConfig, resume: bool = False, overwrite: bool = False) -> tuple[Path, dict]:
    from emoscale.training import trainer

    corpus, family, accelerator, run_dir, resume = prepare_run(config, resume, overwrite)
    metrics = trainer.train(config, family, corpus, run_dir, accelerator, resume)
    return run_dir, metrics


def _count(name: str, default: int) -> int:
    from emoscale.config.rules import launcher_count

    count = launcher_count(name, default)
    return default if count is None else count


def report_error(error: EmoscaleError, training: bool) -> int:
    """One line on stderr, exit code 2. Before training an error is bad input, alike on every rank:
    rank 0 says it once. During training it may be one rank's own (an unreadable clip, a full
    disk): every rank says its own, naming itself."""
    rank, ranks = _count("RANK", 0), _count("WORLD_SIZE", 1)
    # Garbage in these variables is itself the error (config/rules): no rank 0 may be there to say it.
    if training or rank == 0 or rank >= ranks:
        prefix = f"[rank {rank}] " if training and ranks > 1 else ""
        print(f"error: {prefix}{error}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_intermixed_args(argv)  # options and key=value pairs in any order
    library_logs.hold()  # bad input ends with its one line alone; a good run prints them below
    try:
        if not argv:
            from emoscale.tiny import demo

            print(
                "emoscale demo: a tiny LLM learns three-way sentiment with LoRA (see emoscale/tiny/demo.py)"
            )
            from accelerate import PartialState

            with PartialState().main_process_first():
                data, model = demo.prepare()
            config = load_config(overrides=demo.overrides(data, model))
        else:
            config = load_config(args.config, args.overrides)
        corpus, family, accelerator, run_dir, resume = prepare_run(
            config, args.resume, args.overwrite
        )
    except EmoscaleError as error:
        library_logs.drop()
        return report_error(error, training=False)
    finally:
        library_logs.release()
    from emoscale.training import trainer

    try:
        metrics = trainer.train(config, family, corpus, run_dir, accelerator, resume)
    except EmoscaleError as error:
        return report_error(error, training=True)
    test = metrics["test"]
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(
            f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}; run folder: {run_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
