"""Generate mode: which label a generated answer names (issue 14).

An answer names a label when exactly one label occurs in it: case-insensitive, as whole words
("Positive.", "The sentiment of the sentence is positive.", "Answer: NEGATIVE"), a longer label
winning over a shorter one inside it ("very negative" is not also "negative"; 弱积极 is not also
积极). An answer that names two different labels ("positive or negative") or none is invalid
(-1). Labels in scripts written without spaces (the Mandarin labels of CH-SIMS and M3ED) match
anywhere except right after a negating character (不积极 "not positive", 不高兴 "unhappy" name
nothing; 非常积极 "very positive" names 积极), as there are no word boundaries to require;
Latin-script labels match only between characters that are neither letters nor hyphens, so
"negatively", "unhappy" and "non-positive" name nothing, and a hyphen may join a label's words
("Very-negative"). A separate negating word is not read: "not positive" names positive.
"""

from __future__ import annotations

import re
import unicodedata


def _spaced_script(character: str) -> bool:
    """A letter or digit of a script that separates words with spaces (not CJK, kana, Thai...)."""
    if not character.isalnum():
        return False
    name = unicodedata.name(character, "")
    return not name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO"))


def label_pattern(word: str) -> re.Pattern:
    """`word` as a case-insensitive pattern: any run of spaces between its words, and word
    boundaries at its ends where its script has them."""
    body = r"[\s-]+".join(re.escape(part) for part in word.split())
    # Without word boundaries, a negating character right before the label makes it another
    # word (不积极 "not positive", 非积极); 非常积极 "very positive" has 常 there.
    start = r"(?<![\w-])" if _spaced_script(word.strip()[0]) else r"(?<![不没無无未非])"
    end = r"(?![\w-])" if _spaced_script(word.strip()[-1]) else ""
    return re.compile(start + body + end, re.IGNORECASE)


class AnswerParser:
    """Maps generated answers to label indices (-1: no label, or more than one)."""

    def __init__(self, label_words: tuple[str, ...]):
        # Longest first: a span claimed by "very negative" is no longer free for "negative".
        order = sorted(range(len(label_words)), key=lambda i: -len(label_words[i]))
        self.patterns = [(index, label_pattern(label_words[index])) for index in order]

    def __call__(self, answer: str) -> int:
        claimed: list[tuple[int, int]] = []
        named = set()
        for index, pattern in self.patterns:
            for match in pattern.finditer(answer):
                start, end = match.span()
                if any(start < done_end and done_start < end for done_start, done_end in claimed):
                    continue  # inside a longer label already found
                claimed.append((start, end))
                named.add(index)
        return named.pop() if len(named) == 1 else -1
