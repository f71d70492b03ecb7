"""The row checks every table-shaped corpus shares: generic CSV/TSV/JSONL files and any Hugging Face
`datasets` folder (data/generic.py, data/hf_datasets.py) read the same columns, so they apply the
same rules to them (issue 12: malformed rows must not turn into classes).

Each check takes `where` (file:line or path[row]) and raises a one-line DataError naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emoscale.errors import DataError

# Carried into Example as strings when present and not empty; `turn` is read by turn_number.
OPTIONAL_COLUMNS = ("speaker", "dialogue_id", "session", "audio_path")


def clean_label(label: str, where: str) -> str:
    """A label without surrounding spaces; an empty one is an error, never a class ''."""
    label = label.strip()
    if not label:
        raise DataError(f"{where}: empty label")
    return label


def label_set(labels: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The sorted set of (where, label) pairs' labels (first appearance is unstable across files).

    Two labels that differ only in case are an error: they would be two classes with one label word.
    """
    first_seen: dict[str, tuple[str, str]] = {}  # lower-case label -> (spelling, where)
    for where, label in labels:
        spelling, seen_at = first_seen.setdefault(label.lower(), (label, where))
        if spelling != label:
            raise DataError(
                f"{where}: label {label!r} differs from {spelling!r} ({seen_at}) only in case; "
                "use one spelling"
            )
    return tuple(sorted(spelling for spelling, _ in first_seen.values()))


def turn_number(value: object, where: str) -> int:
    """A dialogue position: a whole number >= 0, as an integer or its decimal digits.

    A float (1.7, also 1.0) or a negative number is refused rather than truncated or kept.
    """
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise DataError(f"{where}: turn {value!r} is not a whole number >= 0")
    return int(text)


def optional_fields(row: Mapping[str, object], where: str) -> dict[str, object]:
    """The optional Example fields a row holds: speaker, dialogue_id, session, audio_path, turn."""
    fields: dict[str, object] = {
        column: str(row[column]) for column in OPTIONAL_COLUMNS if row.get(column) not in (None, "")
    }
    if row.get("turn") not in (None, ""):
        fields["turn"] = turn_number(row["turn"], where)
    return fields


def label_words(label_names: Iterable[str]) -> tuple[str, ...]:
    """What the prompt shows for each label: its first letter upper-cased ("joy" -> "Joy")."""
    return tuple(name[:1].upper() + name[1:] for name in label_names)
