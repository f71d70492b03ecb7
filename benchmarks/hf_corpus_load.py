"""MELD's text as a generic CSV corpus and as Hugging Face folders: the same examples, and how long
each takes to load (data.dataset=csv against data.dataset=hf, save_to_disk and Parquet).

    python benchmarks/hf_corpus_load.py                       # MELD in ../shared/data/meld
    python benchmarks/hf_corpus_load.py /data/MELD --repeats 7

Loads run interleaved (csv, save_to_disk, parquet, csv, ...) in one process; medians are printed.
Exits with 1 if any layout gives examples different from the CSV loader's.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bench_files import SHARED_DATA
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from emoscale.data import generic, hf_datasets, meld

COLUMNS = ("text", "label", "speaker", "dialogue_id", "turn")


def data_config(dataset: str, path: Path, labels: list[str] | None = None) -> SimpleNamespace:
    keys = {"target": None, "fold": None, "num_folds": None, "labels": labels, "id_column": "id"}
    keys["train_on_dev"] = False
    return SimpleNamespace(
        dataset=dataset, path=str(path), text_column="text", label_column="label", **keys
    )


def write_layouts(folder: Path, corpus) -> dict[str, Path]:
    """The corpus as train/dev/test.csv, as a save_to_disk DatasetDict and as Parquet files."""
    names = list(corpus.info.label_names)
    features = Features(
        {"id": Value("string"), "text": Value("string"), "label": ClassLabel(names=names)}
        | {column: Value("string") for column in ("speaker", "dialogue_id")}
        | {"turn": Value("int32")}
    )
    splits = {}
    for split, examples in corpus.splits.items():
        rows = [
            {"id": e.id, "text": e.text, "label": e.label, "speaker": e.speaker}
            | {"dialogue_id": e.dialogue_id, "turn": e.turn}
            for e in examples
        ]
        (folder / "csv").mkdir(parents=True, exist_ok=True)
        with open(folder / "csv" / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", *COLUMNS])
            writer.writeheader()
            writer.writerows(row | {"label": names[row["label"]]} for row in rows)
        splits[split] = Dataset.from_list(rows, features=features)
    DatasetDict(splits).save_to_disk(str(folder / "save_to_disk"))
    (folder / "parquet").mkdir()
    for split, dataset in splits.items():
        dataset.to_parquet(str(folder / "parquet" / f"{split}.parquet"))
    return {
        "csv": folder / "csv",
        "save_to_disk": folder / "save_to_disk",
        "parquet": folder / "parquet",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(SHARED_DATA / "meld"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    corpus = meld.load(data_config("meld", Path(args.data)))
    with tempfile.TemporaryDirectory() as tmp:
        layouts = write_layouts(Path(tmp), corpus)
        # The CSV loader sorts label names, a ClassLabel keeps MELD's order: data.labels fixes both.
        labels = list(corpus.info.label_names)
        reference = generic.load(data_config("csv", layouts["csv"], labels))
        seconds: dict[str, list[float]] = {name: [] for name in layouts}
        for _ in range(args.repeats):
            for name, path in layouts.items():
                loader = generic.load if name == "csv" else hf_datasets.load
                start = time.perf_counter()
                loaded = loader(data_config("csv" if name == "csv" else "hf", path, labels))
                seconds[name].append(time.perf_counter() - start)
                if loaded.splits != reference.splits:
                    print(f"{name}: examples differ from the CSV loader's", file=sys.stderr)
                    return 1
    counts = "/".join(str(len(reference.splits[s])) for s in ("train", "dev", "test"))
    csv_median = statistics.median(seconds["csv"])
    print(f"MELD emotion, {counts} utterances, median of {args.repeats} loads:")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:13s} {median:6.3f} s  ({median / csv_median:.2f} x csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
