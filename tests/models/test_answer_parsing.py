"""Generate mode: a generated answer names the one label that occurs in it (answer_parsing.py)."""

from __future__ import annotations

import pytest

from emoscale.data import chsims
from emoscale.models.answer_parsing import AnswerParser

SST2 = ("Negative", "Positive")
SST5 = ("Very negative", "Negative", "Neutral", "Positive", "Very positive")
CHSIMS_5 = tuple(chsims.WORDS[name] for name in chsims.WORDS)


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Positive", 1),
        (" positive.", 1),
        ("Negative.", 0),
        ("The sentiment of the sentence is positive.", 1),
        ("Answer: NEGATIVE!", 0),
        ('"Positive"', 1),
        ("positive, positive", 1),  # the same label twice is still one label
        ("positive or negative", -1),  # two labels: invalid
        ("Negatively charged", -1),  # not the whole word
        ("The sentence is a bit of", -1),  # no label
        ("", -1),
    ],
)
def test_sst2_answers(answer, label):
    assert AnswerParser(SST2)(answer) == label


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Very negative", 0),
        ("The sentiment is very  negative.", 0),  # any run of spaces inside a label
        ("very negative, not just negative", -1),  # two labels named
        ("Negative", 1),
        ("It is neutral", 2),
        ("VERY POSITIVE!!", 4),
        ("positive", 3),
        ("very positive or very negative", -1),
        ("very", -1),
        ("Very-negative", 0),  # a hyphen may join a label's words
        ("non-positive", -1),  # nor is a hyphenated word the label
        ("positive-ish", -1),
    ],
)
def test_sst5_labels_that_contain_each_other(answer, label):
    assert AnswerParser(SST5)(answer) == label


def test_mandarin_labels_need_no_spaces():
    words = CHSIMS_5  # 消极, 弱消极, 中性, 弱积极, 积极: the weak ones contain the others
    parse = AnswerParser(words)
    assert parse("积极") == words.index("积极")
    assert parse("这句话的情感是弱积极。") == words.index("弱积极")  # not also 积极
    assert parse("情感：消极") == words.index("消极")
    assert parse("积极还是消极") == -1
    assert parse("不知道") == -1
    # a negating character right before a label makes another word; 非常 ("very") does not
    assert parse("不积极") == -1
    assert parse("非积极") == -1
    assert parse("非常积极") == words.index("积极")
    assert parse("不积极，是消极") == words.index("消极")


def test_m3ed_labels():
    from emoscale.data import m3ed

    words = m3ed.INFO.label_words
    parse = AnswerParser(words)
    for index, word in enumerate(words):
        assert parse(f"这句话的情绪是{word}。") == index
    assert parse("不高兴") == -1  # "unhappy" is not 高兴 "happy"
