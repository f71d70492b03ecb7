"""The `emoscale` command: one subcommand per task, each with examples in its --help."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoscale.errors import EmoscaleError


def _make_tiny(args: argparse.Namespace) -> int:
    from emoscale.tiny import make_tiny

    text_file = Path(args.text)
    if not text_file.is_file():
        raise EmoscaleError(f"--text {text_file} does not exist")
    texts = [line for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise EmoscaleError(f"--text {text_file} holds no text")
    out = make_tiny(
        args.out, texts, arch=args.arch, hidden_size=args.hidden_size, num_layers=args.layers
    )
    print(f"tiny {args.arch} model and tokenizer saved to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from emoscale import train

    argv = (["--config", args.config] if args.config else []) + args.overrides
    argv += ["--resume"] * args.resume + ["--overwrite"] * args.overwrite
    return train.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoscale", description="Emotion recognition with large pretrained models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    from emoscale.train import build_parser as train_arguments

    train = commands.add_parser(
        "train",
        help="train and evaluate one run",
        formatter_class=formatter,
        epilog="examples:\n  emoscale train                      # the built-in demo\n"
        "  emoscale train --config run.yaml train.lr=3e-4 lora.r=16\n"
        "  accelerate launch emoscale/train.py --config run.yaml   # the same, on every GPU",
    )
    train_arguments(train)
    train.set_defaults(handler=_train)

    tiny = commands.add_parser(
        "make-tiny",
        help="save a tiny random causal LM with a tokenizer trained on your text",
        formatter_class=formatter,
        epilog="example:\n  emoscale make-tiny --arch llama --text sentences.txt --out runs/tiny-llama",
    )
    tiny.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    tiny.add_argument(
        "--text", required=True, help="a text file, one sentence per line (tokenizer training)"
    )
    tiny.add_argument("--out", required=True, help="folder to write the model into")
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.set_defaults(handler=_make_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except EmoscaleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
