"""`emoscale predict RUN --input FILE --output OUT.jsonl`: label a file of any size, on any number
of processes, and pick up where a killed run stopped.

    emoscale predict runs/sst2-lora --input posts.txt --output posts.jsonl
    accelerate launch --multi_gpu --num_processes 8 -m emoscale.cli predict runs/sst2-lora \\
        --input posts.txt --output posts.jsonl          # 8 GPUs (CPU: add --cpu, or nothing)

The input is cut into chunks of CHUNK_LINES lines; chunk c goes to rank c % world size. Every rank
reads the file line by line and keeps one chunk in memory, so memory does not grow with the file.
A finished chunk is written whole to <OUT>.parts/chunk-<c>.jsonl (a temporary name, then a rename):
a kill loses at most the chunk each rank was working on, and the next start (with any number of
processes) skips every chunk already written. Once all are there, rank 0 joins them in input order
into OUT and removes <OUT>.parts. Each output line: {"line": <line number in FILE>, "text", "label",
"scores", "probabilities"} (fusion runs with audio also "audio_path"); blank lines get no output.

The ranks share nothing but the file system (no process group): rank and world size come from the
RANK / WORLD_SIZE that `accelerate launch` (torchrun) sets, and rank 0 waits for the chunk files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from emoscale.data.audio import check_corpus_audio
from emoscale.data.encoding import read_json
from emoscale.data.examples import Corpus, CorpusInfo, Example
from emoscale.errors import DataError, EmoscaleError
from emoscale.inference.predict import (
    answers,
    corpus_info,
    load_trained,
    prediction_row,
    read_inputs,
    run_config,
)

CHUNK_LINES = 512


def chunks(source: Path, size: int) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """(chunk number, [(line number, line), ...]) over the file, one chunk in memory at a time."""
    chunk, number = [], 0
    with open(source, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            chunk.append((number, line.rstrip("\r\n")))
            if len(chunk) == size:
                yield (number - 1) // size, chunk
                chunk = []
    if chunk:
        yield (number - 1) // size, chunk


def check_input_text(source: Path) -> None:
    """The whole input is UTF-8 without NUL bytes, checked line by line before any model loads
    (one pass, a line in memory at a time): a bad byte at line 900,000 used to stop the run there,
    with a traceback, hours in."""
    from emoscale.data.encoding import decode_utf8

    with open(source, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            decode_utf8(raw, source, first_line=number)


def check_output_path(output: Path, config, run_dir: Path) -> None:
    """--output names a file to be, apart from the run and the folders it reads (run_folder's rule
    for eval --out), in a folder emoscale can write in: a folder, `/`, a path below a file, or the
    base model's folder failed with a traceback or wrote into the model."""
    from emoscale.training.run_folder import check_apart

    if output.is_dir() or not output.name:
        raise EmoscaleError(
            f"--output {output} is a folder; give a file to write, e.g. {output / 'predictions.jsonl'}"
        )
    if not output.exists():  # an existing file: check_parts refuses it or resumes its job
        check_apart(output, config, run_dir, "--output")


def job_record(run_dir: Path, source: Path, size: int, overrides: list[str]) -> dict:
    stat = source.stat()
    return {
        "run": str(run_dir.resolve()),
        "overrides": list(
            overrides
        ),  # data.*/eval.* change answers: chunks of two settings never mix
        "input": str(source.resolve()),
        "input_bytes": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "chunk_lines": size,
    }


def check_parts(parts: Path, record: dict, output: Path) -> None:
    """The parts folder must belong to this very job (same run, overrides, input and chunking), or
    none."""
    manifest = parts / "job.json"
    if parts.is_symlink():  # joined, then removed at the end: never through a link
        raise EmoscaleError(
            f"{parts} is a symbolic link (to {os.readlink(parts)}); remove it or choose another "
            "--output"
        )
    if manifest.is_file():
        try:
            earlier = read_json(manifest)
        except DataError:  # not a job.json emoscale wrote: the folder is not ours to fill or remove
            raise EmoscaleError(
                f"{parts} holds a job.json that emoscale did not write; remove it or choose "
                "another --output"
            ) from None
        if earlier != record:
            raise EmoscaleError(
                f"{parts} holds a partial prediction of another run, input or overrides; "
                "remove it or choose another --output"
            )
        return
    if output.exists():
        raise EmoscaleError(f"--output {output} exists; choose another file")
    if parts.exists() and (not parts.is_dir() or any(parts.iterdir())):
        # Not ours (no job.json): it is joined and removed at the end, so it must not be a user's.
        raise EmoscaleError(
            f"{parts} exists and is not emoscale's; remove it or choose another --output"
        )


def start_parts(parts: Path, record: dict) -> None:
    """The parts folder and its job.json, made when the first chunk is written: a refusal before
    that (a missing clip in chunk 0) leaves no parts folder behind."""
    manifest = parts / "job.json"
    if manifest.is_file():
        return
    parts.mkdir(parents=True, exist_ok=True)
    temporary = manifest.with_name(f".job.json.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, manifest)  # every rank writes the same text: whichever lands is right


def result_rows(kept, examples, found, names, source: Path) -> list[dict]:
    """Output rows of one chunk: each example's answer under the number of its line in `source`."""
    numbers = {f"input-{position}": number for position, (number, _) in enumerate(kept, start=1)}
    rows = []
    for index, example in enumerate(examples):
        number = numbers[example.id]
        row = prediction_row(example, *found[index], names, f"{source}:{number}")
        rows.append({"line": number} | row)
    return rows


def readable_audio(
    info: CorpusInfo, examples: list[Example], skip_bad: bool
) -> tuple[list[Example], dict[str, float]]:
    """The chunk's examples whose audio can be read (headers only, before the model runs) and
    each clip's seconds: a bad clip is one line naming it, or with data.skip_bad_audio its line
    gets no output row, as `emoscale predict` without --output drops it."""
    corpus = Corpus(info, {"predict": examples})
    seconds = check_corpus_audio(corpus, None, skip_bad, keep_empty=True)
    return corpus.split("predict"), seconds


def predict_file(
    run_dir: str | Path,
    source: str | Path,
    output: str | Path,
    overrides: list[str] = (),
    chunk_lines: int | None = None,
) -> dict:
    """Label every non-blank line of `source` into `output` (JSON lines, input order); returns
    counts for this rank: chunks done now, chunks found done, lines labelled."""
    from emoscale.models import build_family

    run_dir, source, output = Path(run_dir), Path(source), Path(output)
    chunk_lines = chunk_lines or CHUNK_LINES
    config = run_config(run_dir, overrides)  # first: its rules refuse garbage in RANK/WORLD_SIZE
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not source.is_file():
        raise DataError(f"--input {source} does not exist")
    check_input_text(source)
    check_output_path(output, config, run_dir)
    parts = output.with_name(output.name + ".parts")
    record = job_record(run_dir, source, chunk_lines, overrides)
    check_parts(parts, record, output)

    info = corpus_info(run_dir, config)
    modalities = config.model.modalities if config.model.family == "fusion" else None
    family = build_family(config, Corpus(info, {"predict": []}))
    family.ranks_together = False  # ranks label different chunks: no barrier may wait for one
    if getattr(family, "reader", None) is not None:
        family.reader.cache_budget = 0  # each clip is read once: keeping it only costs memory
    device = torch.device(
        f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    )
    model = load_trained(run_dir, config, family).to(device).eval()
    counts = {"chunks_done": 0, "chunks_kept": 0, "lines": 0, "chunks": 0, "skipped_audio": 0}
    for number, lines in chunks(source, chunk_lines):
        counts["chunks"] = number + 1
        target = parts / f"chunk-{number:08d}.jsonl"
        if number % world != rank:
            continue
        if target.is_file():
            counts["chunks_kept"] += 1
            continue
        kept = [(n, line) for n, line in lines if line.strip()]
        examples = (
            read_inputs(
                [line for _, line in kept],
                modalities,
                source.parent,
                numbers=[number for number, _ in kept],
                source=source,
            )
            if kept
            else []
        )
        if examples and modalities in ("audio", "both"):
            readable, seconds = readable_audio(info, examples, config.data.skip_bad_audio)
            family.audio_seconds = seconds  # this chunk's clips: memory does not grow with the file
            counts["skipped_audio"] += len(examples) - len(readable)
            examples = readable
        found = answers(family, model, examples, config.seed, device) if examples else {}
        rows = result_rows(kept, examples, found, family.label_names, source)
        start_parts(parts, record)
        temporary = target.with_name(f".{target.name}.{rank}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        os.replace(temporary, target)
        counts["chunks_done"] += 1
        counts["lines"] += len(rows)
    if rank == 0:
        join(parts, output, counts["chunks"])
    return counts


def join(parts: Path, output: Path, count: int, poll: float = 0.2) -> None:
    """Rank 0: wait for every chunk, then write them in order into `output` and drop the parts."""
    files = [parts / f"chunk-{number:08d}.jsonl" for number in range(count)]
    while not all(file.is_file() for file in files):
        time.sleep(poll)
    temporary = output.with_name(f".{output.name}.tmp")
    with open(temporary, "wb") as handle:
        for file in files:
            with open(file, "rb") as part:
                shutil.copyfileobj(part, handle)
    os.replace(temporary, output)
    # Only the names this job writes: chunks, job.json, and a killed rank's unfinished temporaries.
    leftovers = [*parts.glob(".chunk-*.tmp"), *parts.glob(".job.json.*.tmp")]
    for file in [*files, parts / "job.json", *leftovers]:
        file.unlink(missing_ok=True)
    if parts.is_dir() and not any(parts.iterdir()):  # anything else in it is not ours to remove
        parts.rmdir()
