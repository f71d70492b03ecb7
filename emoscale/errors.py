"""The one error type that reaches the user as a single line (see cli.main)."""

import argparse
import sys


class EmoscaleError(Exception):
    """A problem with the user's input: config, files, data. Printed as one line, exit code 2."""


class ConfigError(EmoscaleError):
    """A config key with a wrong name, type or value."""


class DataError(EmoscaleError):
    """A data file that is missing, malformed or holds an impossible value."""


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every other bad input: one line and exit code 2 (argparse prints
    its usage block first). Used by `emoscale` and by `python -m emoscale.train` alike. No
    abbreviated options: `--resum` or `--over` must not silently mean `--resume`/`--overwrite`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def reason(error: BaseException, limit: int = 200) -> str:
    """A library exception in a few words for an error line: its message's lines joined (PEFT and
    DeepSpeed write several), cut to `limit`; the type's name when the message is empty (a bare
    `assert`)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (text[:limit] + ("..." if len(text) > limit else "")) if text else type(error).__name__
