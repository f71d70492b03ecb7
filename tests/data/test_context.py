from corpus_files import data_config, write_friends

from emoscale.data import friends
from emoscale.data.context import format_context, previous_turns, split_contexts
from emoscale.data.examples import Example


def _turn(dialogue, turn, speaker, text=None):
    return Example(
        f"{dialogue}-{turn}", text or f"{speaker} says {turn}", 0, speaker, dialogue, turn
    )


# Deliberately out of order, with a second dialogue interleaved.
SPLIT = [
    _turn("d1", 2, "Ross"),
    _turn("d2", 0, "Joey"),
    _turn("d1", 0, "Monica"),
    _turn("d1", 3, "Monica"),
    _turn("d1", 1, "Chandler"),
]


def test_previous_turns_are_earlier_turns_of_the_same_dialogue_oldest_first():
    target = SPLIT[3]  # d1 turn 3
    assert previous_turns(target, SPLIT, 2) == [
        ("Chandler", "Chandler says 1"),
        ("Ross", "Ross says 2"),
    ]
    assert previous_turns(target, SPLIT, 10) == [
        ("Monica", "Monica says 0"),
        ("Chandler", "Chandler says 1"),
        ("Ross", "Ross says 2"),
    ]


def test_never_a_later_turn_and_nothing_for_k_zero():
    assert previous_turns(SPLIT[2], SPLIT, 5) == []  # d1 turn 0: later turns exist, none shown
    assert previous_turns(SPLIT[0], SPLIT, 5) == [
        ("Monica", "Monica says 0"),
        ("Chandler", "Chandler says 1"),
    ]
    assert previous_turns(SPLIT[3], SPLIT, 0) == []
    assert previous_turns(Example("x", "no dialogue", 0), SPLIT, 3) == []


def test_split_contexts_matches_previous_turns():
    for k in (0, 1, 2, 5):
        assert split_contexts(SPLIT, k) == [previous_turns(example, SPLIT, k) for example in SPLIT]


def test_context_never_crosses_splits(tmp_path):
    # The same dialogue id in two splits cannot happen in a loader, but the function must not care:
    # it only ever looks at the split it is given.
    dialogues = {
        "train": [[("Ross", "train line", "neutral"), ("Joey", "train reply", "joy")]],
        "dev": [[("Ross", "dev line", "neutral"), ("Joey", "dev reply", "joy")]],
        "test": [
            [
                ("Ross", "test line", "neutral"),
                ("Joey", "test reply", "non-neutral"),
                ("Monica", "test end", "anger"),
            ]
        ],
    }
    corpus = friends.load(data_config("friends", write_friends(tmp_path, dialogues)))
    dev = corpus.split("dev")
    assert split_contexts(dev, 3) == [[], [("Ross", "dev line")]]
    assert split_contexts(corpus.split("test"), 3) == [
        [],
        [("Ross", "test line")],
    ]  # dropped turns are not examples


def test_format_context_trims_oldest_lines_first():
    turns = [("Monica", "one two three"), ("Chandler", "four five"), (None, "six")]
    words = lambda text: len(text.split())  # noqa: E731 - a token counter for the test
    assert format_context(turns, words) == ["Monica: one two three", "Chandler: four five", "six"]
    assert format_context(turns, words, budget=5) == ["Chandler: four five", "six"]
    assert format_context(turns, words, budget=1) == ["six"]
    assert format_context(turns, words, budget=0) == []
