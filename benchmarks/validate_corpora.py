"""Load the real corpora with emoscale's loaders and compare their counts with the published ones.

    python benchmarks/validate_corpora.py                       # data in ../shared/data
    python benchmarks/validate_corpora.py /data/corpora --json runs/corpora.json

Every row is one count: utterances of a split, dialogues of a split, or one class of a split.
`published` is the number the corpus' paper or release states (sources in PUBLISHED), "-" where
none is published. The script exits with 1 when a published count differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from bench_files import SHARED_DATA

from emoscale.config import DataConfig
from emoscale.data import emodb, load_corpus

# (dataset, folder, target) -> split -> {"n": utterances, "dialogues": ..., class: count}
PUBLISHED: dict[tuple[str, str, str | None], dict[str, dict[str, int]]] = {
    # Socher et al. 2013, sentence level, as in Kim 2014's stsa files.
    ("sst2", "sst", None): {
        "train": {"n": 6920, "negative": 3310, "positive": 3610},
        "dev": {"n": 872, "negative": 428, "positive": 444},
        "test": {"n": 1821, "negative": 912, "positive": 909},
    },
    ("sst5", "sst", None): {
        "train": {
            "n": 8544,
            "very negative": 1092,
            "negative": 2218,
            "neutral": 1624,
            "positive": 2322,
            "very positive": 1288,
        },
        "dev": {
            "n": 1101,
            "very negative": 139,
            "negative": 289,
            "neutral": 229,
            "positive": 279,
            "very positive": 165,
        },
        "test": {
            "n": 2210,
            "very negative": 279,
            "negative": 633,
            "neutral": 389,
            "positive": 510,
            "very positive": 399,
        },
    },
    # Poria et al. 2019, Table 3, and the MELD README (dialogues).
    ("meld", "meld", "emotion"): {
        "train": {
            "n": 9989,
            "dialogues": 1039,
            "neutral": 4710,
            "joy": 1743,
            "sadness": 683,
            "fear": 268,
            "anger": 1109,
            "surprise": 1205,
            "disgust": 271,
        },
        "dev": {
            "n": 1109,
            "dialogues": 114,
            "neutral": 470,
            "joy": 163,
            "sadness": 111,
            "fear": 40,
            "anger": 153,
            "surprise": 150,
            "disgust": 22,
        },
        "test": {
            "n": 2610,
            "dialogues": 280,
            "neutral": 1256,
            "joy": 402,
            "sadness": 208,
            "fear": 50,
            "anger": 345,
            "surprise": 281,
            "disgust": 68,
        },
    },
    ("meld", "meld", "sentiment"): {
        "train": {"n": 9989, "negative": 2945, "neutral": 4710, "positive": 2334},
        "dev": {"n": 1109, "negative": 406, "neutral": 470, "positive": 233},
        "test": {"n": 2610, "negative": 833, "neutral": 1256, "positive": 521},
    },
    # Chen et al. 2018 (EmotionLines), Friends: 1000 dialogues (720/80/200), 14503 utterances, of
    # which 2772 non-neutral; class counts are the whole corpus'.
    ("friends", "emotionlines_friends", None): {
        "train": {"dialogues": 720},
        "dev": {"dialogues": 80},
        "test": {"dialogues": 200},
        "all": {
            "n": 14503 - 2772,
            "neutral": 6530,
            "joy": 1710,
            "sadness": 498,
            "fear": 246,
            "anger": 759,
            "surprise": 1657,
            "disgust": 331,
        },
    },
    # Cerisara et al. 2018, the corpus files: train 1063 posts (our train + dev), test 1142.
    ("mastodon", "mastodon", None): {"train+dev": {"n": 1063}, "test": {"n": 1142}},
    # Burkhardt et al. 2005: 535 utterances, W127 L81 N79 F71 A69 T62 E46.
    ("emodb", "emodb", None): {
        "all": {
            "n": 535,
            "anger": 127,
            "boredom": 81,
            "neutral": 79,
            "happiness": 71,
            "fear": 69,
            "sadness": 62,
            "disgust": 46,
        }
    },
}


# Published counts our loaders cannot reach, and why: shown, but they do not fail the run.
KNOWN = {
    ("meld emotion", "train", "dialogues"): "train_sent_emo.csv has no rows for Dialogue_ID 60",
}


def _counts(corpus, examples) -> dict[str, int]:
    counts = {
        "n": len(examples),
        "dialogues": len({e.dialogue_id for e in examples if e.dialogue_id}),
    }
    for index, name in enumerate(corpus.info.label_names):
        counts[name] = sum(example.label == index for example in examples)
    return counts


def _rows(
    dataset: str, folder: Path, target: str | None, published: dict
) -> tuple[list[dict], dict]:
    corpus = load_corpus(DataConfig(dataset=dataset, path=str(folder), target=target))
    groups = dict(corpus.splits)
    groups["train+dev"] = corpus.split("train") + corpus.split("dev")
    groups["all"] = [example for split in corpus.splits.values() for example in split]
    name = dataset + (f" {target}" if target else "")
    rows = []
    for split in ("train", "dev", "test", "train+dev", "all"):
        if split not in published and split not in corpus.splits:
            continue
        ours = _counts(corpus, groups[split])
        stated = published.get(split, {})
        keys = ["n", *(["dialogues"] if ours["dialogues"] else []), *corpus.info.label_names]
        for key in keys:
            if split in ("train+dev", "all") and key not in stated:
                continue
            theirs = stated.get(key)
            rows.append(
                {
                    "corpus": name,
                    "split": split,
                    "count": key,
                    "ours": ours[key],
                    "published": theirs,
                    "match": None if theirs is None else ours[key] == theirs,
                }
            )
    return rows, dict(corpus.dropped)


def _table(rows: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    """(corpus, split) -> count name -> 'ours/published' (or 'ours'), for printing."""
    table: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        cell = str(row["ours"]) if row["published"] is None else f"{row['ours']}/{row['published']}"
        table.setdefault((row["corpus"], row["split"]), {})[row["count"]] = cell + (
            "*" if row["match"] is False else ""
        )
    return table


def _emodb_sentences(folder: Path) -> bool:
    """The sentence table in emodb.py against the corpus' transcripts.tsv, where there is one."""
    path = folder / "transcripts.tsv"
    if not path.is_file():
        return True
    with path.open(encoding="utf-8") as handle:
        return {
            row["code"]: row["text"] for row in csv.DictReader(handle, delimiter="\t")
        } == emodb.SENTENCES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data",
        nargs="?",
        default=str(SHARED_DATA),
        help="folder holding one folder per corpus",
    )
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    data = Path(args.data)

    rows, dropped = [], {}
    for (dataset, folder, target), published in PUBLISHED.items():
        if not (data / folder).is_dir():
            print(f"skipped {dataset}: no {data / folder}")
            continue
        corpus_rows, corpus_dropped = _rows(dataset, data / folder, target, published)
        rows += corpus_rows
        if corpus_dropped:
            dropped[dataset] = corpus_dropped

    print("ours/published, or ours alone where nothing is published; * marks a difference")
    print(f"{'corpus':<15} {'split':<9} {'n':<11} {'dialogues':<10} classes")
    for (corpus, split), cells in _table(rows).items():
        n, dialogues = cells.pop("n", "-"), cells.pop("dialogues", "-")
        classes = ", ".join(f"{name} {cell}" for name, cell in cells.items())
        print(f"{corpus:<15} {split:<9} {n:<11} {dialogues:<10} {classes}")
    for row in rows:
        if row["match"] is False:
            reason = KNOWN.get((row["corpus"], row["split"], row["count"]), "not explained")
            print(
                f"differs: {row['corpus']} {row['split']} {row['count']}: {row['ours']} against {row['published']} ({reason})"
            )
    for dataset, reasons in dropped.items():
        print(
            f"dropped from {dataset}: "
            + ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        )
    sentences_match = _emodb_sentences(data / "emodb")
    print(f"emodb sentence table matches transcripts.tsv: {sentences_match}")

    differs = [row for row in rows if row["match"] is False]
    unexplained = [
        row for row in differs if (row["corpus"], row["split"], row["count"]) not in KNOWN
    ]
    equal = sum(row["match"] is True for row in rows)
    print(
        f"{equal} counts equal the published ones, {len(differs)} differ ({len(unexplained)} unexplained)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        report = {
            "data": str(data),
            "rows": rows,
            "dropped": dropped,
            "emodb_sentences_match": sentences_match,
        }
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 1 if unexplained or not sentences_match else 0


if __name__ == "__main__":
    sys.exit(main())
