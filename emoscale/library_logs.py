"""Lines that libraries log as they load, held back until emoscale knows the input is good.

Importing peft imports bitsandbytes, which logs the CUDA binary it picked when it is not an exact
match; accelerate's first look for a DeepSpeed engine imports DeepSpeed, which logs "Setting
accelerator to CPU" on a machine without a GPU. Printed before an `error:` line they made a
one-line error two lines (issue 12). `hold()` keeps their warnings in memory; `release()` prints
them once the command is past its input checks, so a successful run shows every one of them, and
`drop()` forgets them when the command ends with a one-line error. Errors are never held.
"""

from __future__ import annotations

import logging

# The loggers these libraries write to at import (a filter applies to its own logger's records).
LOGGERS = ("bitsandbytes", "bitsandbytes.cextension", "bitsandbytes.cuda_specs", "DeepSpeed")


class _Held(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.holding = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.holding and record.levelno < logging.ERROR:
            self.records.append(record)
            return False
        return True


_HELD = _Held()
for _name in LOGGERS:
    logging.getLogger(_name).addFilter(_HELD)


def hold() -> None:
    """From now on, keep the libraries' warnings instead of printing them."""
    _HELD.holding = True


def release() -> None:
    """Print what was held, in order, through each logger's own handlers; stop holding."""
    _HELD.holding = False
    records, _HELD.records = _HELD.records, []
    for record in records:
        logging.getLogger(record.name).handle(record)


def drop() -> None:
    """Forget what was held (the command ended with its one-line error); stop holding."""
    _HELD.holding = False
    _HELD.records = []
