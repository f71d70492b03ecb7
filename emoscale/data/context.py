"""Dialogue context for prompts: the earlier turns of an utterance's dialogue (prompt.context_turns).

Only earlier turns of the same dialogue in the same split are ever shown: never a later utterance
(the model would read the future) and never another split (dev or test text would leak into
training prompts, or the other way round). `context_turns: 0` gives no context and reproduces the
papers' single-utterance prompts. The prompt builder fits the context into its token budget with
`format_context`, dropping the oldest lines first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from emoscale.data.examples import Example

Turn = tuple[str | None, str]  # (speaker, text)


def previous_turns(example: Example, split: list[Example], k: int) -> list[Turn]:
    """The k utterances of `example`'s dialogue just before it in `split`, oldest first."""
    if k <= 0 or example.dialogue_id is None or example.turn is None:
        return []
    earlier = sorted(
        (
            other
            for other in split
            if other.dialogue_id == example.dialogue_id
            and other.turn is not None
            and other.turn < example.turn
        ),
        key=lambda other: other.turn,
    )
    return [(other.speaker, other.text) for other in earlier[-k:]]


def split_contexts(
    split: list[Example], k: int, context_only: list[Example] = ()
) -> list[list[Turn]]:
    """`previous_turns` for every example of `split` at once (one pass, not one per example).
    `context_only`: the split's utterances without a label (Corpus.context_only), which are
    context for the turns after them like any other utterance."""
    if k <= 0:
        return [[] for _ in split]
    dialogues: dict[str, list[Example]] = defaultdict(list)
    for example in [*split, *context_only]:
        if example.dialogue_id is not None and example.turn is not None:
            dialogues[example.dialogue_id].append(example)
    for turns in dialogues.values():
        turns.sort(key=lambda example: example.turn)
    contexts = []
    for example in split:
        turns = dialogues.get(example.dialogue_id, []) if example.turn is not None else []
        earlier = [other for other in turns if other.turn < example.turn]
        contexts.append([(other.speaker, other.text) for other in earlier[-k:]])
    return contexts


def format_context(
    turns: list[Turn], count_tokens: Callable[[str], int], budget: int | None = None
) -> list[str]:
    """`Speaker: text` lines, oldest first, with the oldest dropped until they fit in `budget` tokens."""
    lines = [f"{speaker}: {text}" if speaker else text for speaker, text in turns]
    if budget is not None:
        while lines and count_tokens("\n".join(lines)) > budget:
            lines.pop(0)
    return lines
