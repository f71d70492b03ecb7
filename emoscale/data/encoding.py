"""Reading corpus text files and undoing the Windows-1252 damage some of them carry.

Two kinds of damage appear in the corpora transcribed on Windows (EmotionLines, MELD before
declare-lab/MELD#28):
- C1 control characters: a Windows-1252 byte read as Latin-1, so the apostrophe 0x92 is stored as
  U+0092 (EmotionLines' `\\u0092`). Each is mapped to the character Windows-1252 means (’ … — “ ”),
  the mapping MELD's maintainers applied in that pull request.
- Mojibake: UTF-8 bytes decoded as Windows-1252 or Latin-1 (`â€™` for ’). Decoded back where the
  bytes form valid UTF-8, so ordinary accented text is left alone.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from emoscale.errors import DataError

_CONTINUATION = (
    "[\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]"  # UTF-8 bytes 0x80-0xBF as Windows-1252 shows them
)
_MOJIBAKE = re.compile(
    f"[\xc2-\xdf]{_CONTINUATION}|[\xe0-\xef]{_CONTINUATION}{{2}}|[\xf0-\xf4]{_CONTINUATION}{{3}}"
)
_C1 = re.compile("[\x80-\x9f]")


def decode_utf8(
    raw: bytes, name: str | Path, fix: str = "save the file as UTF-8", first_line: int = 1
) -> str:
    """Strict UTF-8 (a byte-order mark is dropped); else one line naming the line and the byte.
    A NUL byte is valid UTF-8 but no text holds one (a binary file, a damaged or UTF-16 export).
    `first_line`: the file's line number of raw's first line (raw read a line at a time)."""
    _refuse_nul(raw, name, first_line)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + first_line
        raise DataError(
            f"{name}:{line}: not UTF-8 (byte 0x{raw[error.start]:02x}); {fix}"
        ) from None


def _refuse_nul(raw: bytes, name: str | Path, first_line: int = 1) -> None:
    """One line naming the line of the first NUL byte: valid UTF-8, but no text holds one."""
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + first_line
        raise DataError(f"{name}:{line}: a NUL byte (0x00); a text file holds none")


def read_utf8(path: Path) -> str:
    """A corpus file that its release writes as UTF-8: strict (the line and byte of the first
    non-UTF-8 byte), a byte-order mark dropped, no NUL bytes. Every loader reads through here or
    `read_text`, so a re-saved copy (Excel's BOM, Latin-1) gets one line, never a traceback."""
    return decode_utf8(path.read_bytes(), path)


def _no_repeated_keys(path: Path):
    def build(pairs: list[tuple[str, object]]) -> dict:
        row: dict = {}
        for key, value in pairs:
            if key in row:  # json.loads would keep the last silently: a label lost without a word
                raise DataError(f"{path}: key {key!r} appears twice in one object")
            row[key] = value
        return row

    return build


class _NonFinite:
    """A number as written in a JSON file whose value is not finite: `NaN`, `Infinity` (not JSON;
    Python's json reads them) or a number past a float's range (`1e400` reads as inf)."""

    def __init__(self, written: str):
        self.written = written


def read_json(path: Path, finite: bool = True) -> object:
    """A JSON file emoscale reads, a corpus' (EmotionLines, M3ED) or a run folder's (metrics.json,
    adapter_config.json): UTF-8 as read_utf8, valid JSON, no repeated key, and with `finite` no
    number that is not finite (NaN, Infinity, 1e400), named by file and key. A damaged one is one
    line, never a traceback."""
    path = Path(path)
    try:
        return parse_json(read_utf8(path), path, finite)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None


def parse_json(text: str, path: Path, finite: bool = True, infinity: bool = False) -> object:
    """read_json's rules for text already read: a repeated key or (with `finite`) a non-finite
    number is a DataError naming `path` and the key; a syntax error is json's JSONDecodeError, for
    callers that word it their own way (model folders name the config key). `infinity`: +-Infinity
    is a number (transformers writes it in model configs, e.g. Mamba2's `time_step_limit`); NaN
    is still refused."""

    def number(written: str) -> float | _NonFinite:
        value = float(written.replace("Infinity", "inf"))
        taken = not finite or math.isfinite(value) or (infinity and math.isinf(value))
        return value if taken else _NonFinite(written)

    value = json.loads(
        text,
        object_pairs_hook=_no_repeated_keys(path),
        parse_constant=number,
        parse_float=number,
    )
    if finite:
        _refuse_non_finite(value, path, "")
    return value


def _refuse_non_finite(value: object, path: Path, key: str) -> None:
    """The first non-finite number, depth first in file order, as one line naming its key
    (`test.per_class.joy.f1`; list items as `[i]`)."""
    if isinstance(value, _NonFinite):
        where = f"key {key!r} is " if key else ""
        raise DataError(f"{path}: {where}{value.written} (not a finite number)")
    if isinstance(value, dict):
        for name, item in value.items():
            _refuse_non_finite(item, path, f"{key}.{name}" if key else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_non_finite(item, path, f"{key}[{index}]")


def read_text(path: Path) -> str:
    """A text file as UTF-8 (a byte-order mark is dropped); an old Windows-1252 export also reads.
    No NUL bytes (see read_utf8)."""
    raw = path.read_bytes()
    _refuse_nul(raw, path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Latin-1 never fails; its C1 characters are then mapped by `repair` like EmotionLines' ones.
        return raw.decode("latin-1")


def _as_bytes(text: str) -> bytes:
    return b"".join(bytes([ord(c)]) if "\x80" <= c <= "\x9f" else c.encode("cp1252") for c in text)


def _undo_mojibake(match: re.Match) -> str:
    try:
        return _as_bytes(match.group()).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return match.group()


def _windows_1252(match: re.Match) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D mean nothing in Windows-1252
        return match.group()


def repair(text: str) -> str:
    """`he\\x92s` and `heâ€™s` both become `he’s`; a non-breaking space becomes a space."""
    text = _MOJIBAKE.sub(_undo_mojibake, text)
    return _C1.sub(_windows_1252, text).replace("\xa0", " ")
