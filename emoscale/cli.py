"""The `emoscale` command: one subcommand per task, each with examples in its --help.

    emoscale recipes                                   # the papers' table rows, ready to run
    emoscale train --recipe sst2_lora model.path=... data.path=...
    emoscale cv | sweep | eval | predict | report | estimate | export | convert | make-tiny

Handlers here only read arguments and print; the work is in the module each one names. Bad input
of any kind ends with one line, `error: ...`, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from emoscale import library_logs
from emoscale.errors import EmoscaleError, OneLineParser

EXAMPLES = {
    "train": """examples:
  emoscale train                                     # the built-in demo (tiny model, CPU)
  emoscale train --recipe sst2_lora model.path=models/chatglm2-6b data.path=data/sst
  emoscale train --config run.yaml train.lr=3e-4 lora.r=16
  accelerate launch emoscale/train.py --config run.yaml   # the same, on every GPU""",
    "eval": """examples:
  emoscale eval runs/sst2-lora --split dev                 # prints the metrics as JSON
  emoscale eval runs/mosi3-lora data.dataset=chsims data.target=3class data.path=data/sims \\
      --out runs/mosi3-lora-on-chsims                      # metrics, predictions, confusion matrix""",
    "predict": """examples:
  echo "What a wonderful film." | emoscale predict runs/sst2-lora
  emoscale predict runs/sst2-lora --input sentences.txt --json
  emoscale predict runs/iemocap-fold0 --input clips.tsv    # audio_path<TAB>transcript per line
  emoscale predict runs/sst2-lora --input posts.txt --output posts.jsonl   # any size, resumable
  accelerate launch --num_processes 2 -m emoscale.cli predict runs/sst2-lora \\
      --input posts.txt --output posts.jsonl               # sharded over the processes
output: label<TAB>per-label probabilities<TAB>input; --json: one object per line with the
per-label scores (log-likelihoods) and probabilities; --output: one JSON object per input line,
in input order, with its line number""",
    "cv": """examples:
  emoscale cv --recipe iemocap_fusion_lora_wavlm model.audio_path=models/wavlm-base-plus \\
      model.text_path=models/roberta-base data.path=data/IEMOCAP_full_release
  emoscale cv --recipe mastodon_lora model.path=... data.path=... --folds 0,1,2
  emoscale cv --config run.yaml data.num_folds=5 output_dir=runs/my-cv
  emoscale cv --config run.yaml output_dir=runs/my-cv --launcher local --parallel 2 --devices 0,1,2,3
  emoscale cv --config run.yaml output_dir=runs/my-cv --launcher slurm --max-running 4 \\
      -- --partition=gpu --gres=gpu:1 --time=4:00:00      # one job array; returns at once
  emoscale cv --status runs/my-cv         # each fold: pending, running, done, failed; then cv.json""",
    "sweep": """examples:
  emoscale sweep --recipe sst2_lora model.path=... data.path=... --grid lora.r=4,8,16 train.lr=1e-4,3e-4
  emoscale sweep --config run.yaml --grid seed=1,2,3       # seeds: then `emoscale report` the parent
  emoscale sweep --config run.yaml --grid 'lora.target_modules=[q_proj,v_proj],[q_proj,k_proj,v_proj]'
  emoscale sweep --config run.yaml --grid seed=1,2,3,4 --launcher local --parallel 2
  emoscale sweep --status runs/my-sweep   # each point's state; sweep.json once all are done""",
    "report": """examples:
  emoscale report runs/sst2-lora-seed1 runs/sst2-lora-seed2      # one row: mean ± std of 2 runs
  emoscale report runs/iemocap-cv runs/mosi3-*  --out reports     # cv parents, globs
  emoscale report --targets                                       # the papers' tables alone
  emoscale report runs/sst2-* --targets                           # every paper row, ours beside
  emoscale report runs/sst2-* --targets my_targets.yaml           # the paper's numbers, your copy
writes report.md, report.csv and report.png into --out, and prints the markdown. --targets: also
every row of both papers' tables (and papers.csv); FILE in the format of
emoscale/recipes/targets.yaml, or the short form `sst2_lora: {accuracy: 95.69, source: ...}`""",
    "recipes": """examples:
  emoscale recipes                      # every recipe: dataset, method, the paper's target
  emoscale recipes sst2_lora            # one recipe's YAML
  emoscale train --recipe sst2_lora model.path=... data.path=...""",
    "estimate": """examples:
  emoscale estimate --recipe sst2_lora model.path=models/chatglm2-6b
  emoscale estimate --config run.yaml model.load_in_8bit=true --num-gpus 4
reads only the model's config.json: no weights are loaded""",
    "export": """example:
  emoscale export runs/sst2-lora --out models/chatglm2-6b-sst2   # LoRA merged into the weights""",
    "convert": """examples:
  emoscale convert chatglm models/chatglm2-6b-download --out models/chatglm2-6b
  emoscale convert gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m-instruct
  emoscale convert <format> --help""",
    "convert chatglm": """example:
  emoscale convert chatglm models/chatglm2-6b-download --out models/chatglm2-6b
  emoscale estimate --recipe sst5_lora model.path=models/chatglm2-6b
  emoscale train --recipe sst5_lora model.path=models/chatglm2-6b data.path=data/sst
a ChatGLM2-6B or ChatGLM3-6B folder (config.json, pytorch_model-*.bin or safetensors,
tokenizer.model) becomes a transformers GlmForCausalLM folder (safetensors, fast tokenizer);
its own Python code is never run. Nothing is written to --out unless the conversion succeeds.""",
    "convert gguf": """example:
  emoscale convert gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m-instruct
  emoscale train --recipe sst2_lora model.path=models/smollm2-135m-instruct data.path=data/sst
a llama.cpp GGUF file (any architecture transformers reads from GGUF) becomes a model folder:
dequantized weights in --dtype, tokenizer with its chat template, generation config.""",
    "make-tiny": """example:
  emoscale make-tiny --arch llama --text sentences.txt --out runs/tiny-llama""",
}


Parser = OneLineParser  # usage mistakes: one line and exit code 2


def _config_path(args: argparse.Namespace) -> str | None:
    """The base config: a recipe's file or --config (one of them at most), or none."""
    if args.recipe is not None:  # `--recipe ""` is an unknown recipe, not no recipe (the demo)
        from emoscale.studies import recipes

        return str(recipes.path(args.recipe))
    return args.config


# --- handlers ----------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from emoscale import train

    path = _config_path(args)
    argv = (["--config", path] if path is not None else []) + args.overrides
    argv += ["--resume"] * args.resume + ["--overwrite"] * args.overwrite
    return train.main(argv)


def _eval(args: argparse.Namespace) -> int:
    from emoscale.evaluation.metrics import HEADLINE
    from emoscale.inference.predict import evaluate_run

    metrics = evaluate_run(args.run_dir, args.overrides, args.split, args.out)
    shown = {
        key: metrics[key] for key in (*HEADLINE, "invalid_rate", "num_examples") if key in metrics
    }
    print(json.dumps({"split": args.split, **shown}, indent=2))
    if args.out:
        print(f"written to {args.out}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from emoscale.inference.predict import format_prediction, predict

    if args.output:  # a file of any size, sharded over the processes of `accelerate launch`
        from emoscale.inference.predict_stream import predict_file

        if args.input in (None, "-"):
            raise EmoscaleError("--output needs --input FILE (stdin cannot be shared out)")
        size = int(os.environ.get("EMOSCALE_CHUNK_LINES", "0")) or None  # tests: small chunks
        counts = predict_file(args.run_dir, args.input, args.output, args.overrides, size)
        rank = os.environ.get("RANK", "0")
        print(
            f"rank {rank}: {counts['chunks_done']} chunks labelled, {counts['chunks_kept']} kept "
            "from an earlier start"
            + (
                f", {counts['skipped_audio']} lines skipped (data.skip_bad_audio)"
                if counts["skipped_audio"]
                else ""
            ),
            file=sys.stderr,
        )
        if rank == "0":
            print(f"{args.output}: every line of {args.input} labelled ({counts['chunks']} chunks)")
        return 0
    for result in predict(args.run_dir, overrides=args.overrides, source=args.input):
        print(json.dumps(result, ensure_ascii=False) if args.json else format_prediction(result))
    return 0


def _launch_options(args: argparse.Namespace):
    from emoscale.studies.launchers import LaunchOptions

    return LaunchOptions(
        args.launcher, args.parallel, args.devices, args.max_running, args.sbatch_options
    )


def _status(args: argparse.Namespace) -> int:
    """--status PARENT: one line per point; 0 once all are done (the summary is then written)."""
    from emoscale.studies import launchers

    text, done = launchers.status(Path(args.status), args.command)
    print(text)
    return 0 if done else 3


def _cv(args: argparse.Namespace) -> int:
    from emoscale.studies import cv

    if args.status:
        return _status(args)
    options = _launch_options(args)
    _, text = cv.run(
        _config_path(args), args.overrides, args.folds, args.resume, args.overwrite, options
    )
    print(text)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from emoscale.studies import sweep

    if args.status:
        return _status(args)
    if not args.grid:
        Parser(prog="emoscale sweep").error("the following arguments are required: --grid")
    options = _launch_options(args)
    _, text = sweep.run(
        _config_path(args), args.overrides, args.grid, args.resume, args.overwrite, options
    )
    print(text)
    return 0


def _report(args: argparse.Namespace) -> int:
    from emoscale.studies.report import write_report

    papers = args.targets is not None  # --targets alone: the shipped file
    text, out = write_report(args.run_dirs, args.out, args.split, args.targets or None, papers)
    written = ["report.md"] + (["report.csv", "report.png"] if args.run_dirs else [])
    print(text + f"\n{', '.join(written + (['papers.csv'] if papers else []))}: {out}")
    return 0


def _print_columns(rows: list[dict]) -> None:
    columns = list(rows[0])
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in columns[:-1]}
    print("  ".join(key.ljust(widths.get(key, 0)) for key in columns).rstrip())
    for row in rows:
        print("  ".join(row[key].ljust(widths.get(key, 0)) for key in columns).rstrip())


def _recipes(args: argparse.Namespace) -> int:
    from emoscale.studies import published, recipes

    if args.name:
        print(recipes.path(args.name).read_text(), end="")
        return 0
    recipe_rows, other_rows = published.listing()
    _print_columns(recipe_rows)
    print(f"\nThe papers' other rows ({published.NO_RECIPE}, or a recipe's second row):\n")
    _print_columns(other_rows)
    small = [
        {"name": name, "what": recipes.path(name).read_text().splitlines()[0].lstrip("# ")}
        for name in recipes.small_model_names()
    ]
    if small:
        print(
            f"\nRecipes for small real models (not rows of the papers), {recipes.SMALL_MODEL_DIR}:\n"
        )
        _print_columns(small)
    print(
        f"\n{len(recipe_rows)} recipes in {recipes.RECIPE_DIR}; "
        f"{len(recipe_rows) + len(other_rows)} published rows in {published.TARGETS_FILE.name}"
    )
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from emoscale.config import load_config
    from emoscale.errors import ConfigError
    from emoscale.models.adapters import check_model_folder
    from emoscale.models.model_folder import check_config_values
    from emoscale.training import estimate, run_shape

    config = load_config(_config_path(args), args.overrides)
    if config.model.family != "prompt_lm":
        raise ConfigError("config key 'model.family': estimate sizes prompt_lm runs (an LLM) only")
    if config.model.method not in estimate.METHODS:
        raise ConfigError(
            f"config key 'model.method': estimate sizes training runs ({', '.join(estimate.METHODS)}); "
            f"{config.model.method!r} trains nothing"
        )
    folder = check_model_folder(config.model.path)
    check_config_values(folder, "model.path")  # config.json only: estimate needs no weights
    tokens, source = run_shape.answer_tokens(config)
    shape = run_shape.shape_from_run_config(config, tokens)
    rows = estimate.estimate_from_folder(folder, shape, args.num_gpus)
    quantization = f", {shape.quantization}" if shape.quantization else ""
    print(
        f"{folder}: {shape.method}, batch {shape.batch_size} x {shape.seq_len} tokens, "
        f"{shape.dtype}{quantization}, {args.num_gpus} GPU(s)"
    )
    print(source)
    print(estimate.format_table(rows))
    return 0


def _export(args: argparse.Namespace) -> int:
    from emoscale.inference.export import export

    if not Path(args.run_dir).is_dir():
        raise EmoscaleError(f"run folder {args.run_dir} does not exist")
    print(f"merged model saved to {export(args.run_dir, args.out)}")
    return 0


def _convert_chatglm(args: argparse.Namespace) -> int:
    from emoscale.inference.convert.chatglm import convert

    print(f"GlmForCausalLM folder written to {convert(args.src, args.out)}")
    return 0


def _convert_gguf(args: argparse.Namespace) -> int:
    from emoscale.inference.convert.gguf import convert_gguf

    print(f"model folder written to {convert_gguf(args.gguf_file, args.out, args.dtype)}")
    return 0


def _make_tiny(args: argparse.Namespace) -> int:
    from emoscale.tiny.lm import make_tiny

    text_file = Path(args.text)
    if not text_file.is_file():
        raise EmoscaleError(f"--text {text_file} does not exist")
    from emoscale.data.encoding import read_utf8  # strict: one line for Latin-1 or a NUL byte

    texts = [line for line in read_utf8(text_file).splitlines() if line.strip()]
    if not texts:
        raise EmoscaleError(f"--text {text_file} holds no text")
    out = make_tiny(
        args.out,
        texts,
        arch=args.arch,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        initializer_range=args.init_range,
    )
    print(f"tiny {args.arch} model and tokenizer saved to {out}")
    return 0


# --- arguments ---------------------------------------------------------------------------------


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _tiny_hidden_size(text: str) -> int:
    """make-tiny's width: its 4 attention heads need a multiple of 8 (RoPE pairs), and a tiny
    model is small (3 was transformers' traceback; 10**9 a traceback for the memory it asked)."""
    size = _positive(text)
    if size % 8 or size > 4096:
        raise argparse.ArgumentTypeError(
            f"expected a multiple of 8 (4 attention heads) up to 4096 for a tiny model, got {text!r}"
        )
    return size


def _tiny_layers(text: str) -> int:
    layers = _positive(text)  # 100000000 layers ran for hours
    if layers > 48:
        raise argparse.ArgumentTypeError(f"expected at most 48 for a tiny model, got {text!r}")
    return layers


def _unit_interval(text: str) -> float:
    """A number in (0, 1]: make-tiny's --init-range (transformers refuses others mid-build)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number above 0 and at most 1, got {text!r}")
    return value


def _config_arguments(command: argparse.ArgumentParser, overrides: bool = True) -> None:
    source = command.add_mutually_exclusive_group()
    source.add_argument("--recipe", help="a shipped recipe as the base config (`emoscale recipes`)")
    source.add_argument("--config", help="a YAML run config as the base config")
    if overrides:
        command.add_argument(
            "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4"
        )


def _run_flags(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--resume", action="store_true", help=f"continue interrupted {what}")
    command.add_argument("--overwrite", action="store_true", help=f"redo finished {what}")


def _launch_arguments(command: argparse.ArgumentParser) -> None:
    """Parallel points (studies/launchers.py); sbatch options follow a lone `--`."""
    command.add_argument("--launcher", choices=["local", "slurm"], help="run points side by side")
    command.add_argument("--parallel", type=_positive, help="local: points at once (default 1)")
    command.add_argument(
        "--devices", help="local: GPU numbers shared out over the points, e.g. 0,1,2,3"
    )
    command.add_argument("--max-running", type=_positive, help="slurm: array tasks at once")
    command.add_argument(
        "--status", metavar="PARENT", help="each point's state; the summary once done"
    )


def build_parser() -> Parser:
    parser = Parser(
        prog="emoscale",
        description="Emotion recognition with large pretrained models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  emoscale recipes\n  emoscale train --recipe sst2_lora "
        "model.path=... data.path=...\n  emoscale <command> --help",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    def command(name: str, help: str, handler) -> Parser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    train = command("train", "train and evaluate one run", _train)
    _config_arguments(train)
    train.add_argument("--resume", action="store_true", help="continue the run in output_dir")
    train.add_argument("--overwrite", action="store_true", help="replace a run in output_dir")

    eval_ = command("eval", "evaluate a finished run on another split or corpus", _eval)
    eval_.add_argument("run_dir", help="a finished run folder")
    eval_.add_argument("overrides", nargs="*", metavar="key=value", help="data.* and eval.* keys")
    eval_.add_argument("--split", default="test", choices=["train", "dev", "test"])
    eval_.add_argument("--out", help="write metrics, predictions and a confusion matrix here")

    predict = command("predict", "label new texts (or audio + text) with a finished run", _predict)
    predict.add_argument("run_dir", help="a finished run folder")
    predict.add_argument("overrides", nargs="*", metavar="key=value", help="data.* and eval.* keys")
    predict.add_argument("--input", help="a file with one input per line (default: stdin)")
    predict.add_argument("--json", action="store_true", help="one JSON object per input")
    predict.add_argument(
        "--output", help="JSON lines into this file, streamed, resumable, sharded over processes"
    )

    cv = command("cv", "cross-validation: every fold a run, then mean ± std", _cv)
    _config_arguments(cv)
    cv.add_argument("--folds", help="comma-separated fold numbers (default: all)")
    _run_flags(cv, "folds")
    _launch_arguments(cv)

    sweep = command("sweep", "a grid over config keys: every point a run", _sweep)
    _config_arguments(sweep)
    sweep.add_argument("--grid", nargs="+", metavar="key=v1,v2", help="values to try per key")
    _run_flags(sweep, "points")
    _launch_arguments(sweep)

    report = command("report", "finished runs as the papers' tables and a chart", _report)
    report.add_argument("run_dirs", nargs="*", help="run folders, or folders holding runs")
    report.add_argument("--out", default="reports", help="output folder (default: reports)")
    report.add_argument("--split", default="test", choices=["dev", "test"])
    report.add_argument(
        "--targets",
        nargs="?",
        const="",
        metavar="FILE",
        help="also print every row of the papers' tables; FILE: your copy of the numbers in "
        "targets.yaml's format (default: the shipped emoscale/recipes/targets.yaml)",
    )

    listing = command("recipes", "list the shipped recipes, or print one", _recipes)
    listing.add_argument("name", nargs="?", help="a recipe to print")

    estimate = command("estimate", "predict a run's peak GPU memory per device", _estimate)
    _config_arguments(estimate)
    estimate.add_argument("--num-gpus", type=_positive, default=1, help="GPUs the run shards over")

    export = command("export", "merge a LoRA run into a plain model folder", _export)
    export.add_argument("run_dir", help="a finished LoRA run folder")
    export.add_argument("--out", required=True, help="folder for the merged model")

    convert = command("convert", "turn a checkpoint of another format into a model folder", None)
    formats = convert.add_subparsers(dest="format", required=True, metavar="<format>")
    chatglm = formats.add_parser(
        "chatglm",
        help="ChatGLM2-6B / ChatGLM3-6B -> transformers' GlmForCausalLM",
        description="Convert a ChatGLM2-6B / ChatGLM3-6B folder to transformers' GlmForCausalLM.",
        epilog=EXAMPLES["convert chatglm"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chatglm.set_defaults(handler=_convert_chatglm)
    chatglm.add_argument("src", help="the downloaded ChatGLM2/3 folder")
    chatglm.add_argument(
        "--out", required=True, help="folder for the converted model (new or empty)"
    )
    gguf = formats.add_parser(
        "gguf",
        help="a llama.cpp GGUF file -> a plain model folder",
        description="Convert a GGUF file (llama.cpp) to a plain Hugging Face model folder.",
        epilog=EXAMPLES["convert gguf"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gguf.set_defaults(handler=_convert_gguf)
    gguf.add_argument("gguf_file", help="the .gguf file")
    gguf.add_argument("--out", required=True, help="folder for the model (new or empty)")
    gguf.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
        help="dtype of the dequantized weights (default: float32)",
    )  # fmt: skip

    tiny = command("make-tiny", "save a tiny random causal LM for tests and demos", _make_tiny)
    tiny.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    tiny.add_argument("--text", required=True, help="one sentence per line (tokenizer training)")
    tiny.add_argument("--out", required=True, help="folder to write the model into")
    tiny.add_argument("--hidden-size", type=_tiny_hidden_size, default=64)
    tiny.add_argument("--layers", type=_tiny_layers, default=2)
    tiny.add_argument(
        "--init-range", type=_unit_interval, default=0.02,
        help="initializer_range (default 0.02: learns fully fine-tuned; 0.2 suits LoRA on a "
        "frozen random model)",
    )  # fmt: skip
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Like parse_args, but `key=value` overrides may also follow the options."""
    parser = build_parser()
    sbatch_options = []
    if argv[:1] in (["cv"], ["sweep"]) and "--" in argv:
        cut = argv.index("--")  # cv/sweep: what follows a lone -- goes to sbatch as it is
        argv, sbatch_options = argv[:cut], argv[cut + 1 :]
    args, extra = parser.parse_known_args(argv)
    args.sbatch_options = sbatch_options
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        prog = f"emoscale {args.command}"
        Parser(prog=prog).error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = args.overrides + extra
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    library_logs.hold()  # libraries' import-time lines: printed after a success, dropped on error
    try:
        args = parse(argv)
        return args.handler(args)
    except SystemExit as exit:  # --help (0) and usage errors (2) end here, not in the caller
        return exit.code if isinstance(exit.code, int) else 2
    except EmoscaleError as error:
        library_logs.drop()
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        library_logs.release()


if __name__ == "__main__":
    sys.exit(main())
