"""Use a finished run: predict new inputs (`emoscale predict`) or evaluate it on another split or
corpus (`emoscale eval`).

    emoscale predict runs/sst2-lora < sentences.txt       # one text per line: label, label scores
    emoscale predict runs/iemocap-fold0 --input clips.tsv  # audio_path<TAB>transcript per line
    emoscale eval runs/sst2-lora --split dev
    emoscale eval runs/mosi3-lora data.dataset=chsims data.target=3class data.path=... --out runs/x

The run's config.yaml rebuilds its model family (only data.* and eval.* keys may be overridden:
the weights are the run's). Trained tensors come from <run>/model, in safetensors only: a PEFT
adapter, the full weights, or the fusion model's tensors. Nothing in the run or model folders is
executed: trust_remote_code stays off, and a run trained with it is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from emoscale.config import RunConfig, load_config, save_config
from emoscale.data.encoding import decode_utf8, read_json
from emoscale.data.examples import Corpus, CorpusInfo, Example
from emoscale.errors import ConfigError, DataError, EmoscaleError
from emoscale.models.family import ModelFamily, predict_with_answers

OVERRIDABLE = ("data.", "eval.")
LABEL_KEYS = ("data.dataset", "data.target", "data.labels", "data.label_column")


def run_config(run_dir: Path, overrides: list[str] = ()) -> RunConfig:
    """The finished run's config with data.* / eval.* overrides; refuses remote code."""
    if not (run_dir / "config.yaml").is_file():
        raise EmoscaleError(f"{run_dir} is not a run folder (no config.yaml)")
    if not (run_dir / "metrics.json").is_file():
        raise EmoscaleError(f"{run_dir}: the run has not finished (no metrics.json)")
    for item in overrides:
        if not item.partition("=")[0].startswith(OVERRIDABLE):
            raise ConfigError(
                f"override {item!r}: only data.* and eval.* keys can change; the model is the run's"
            )
    config = load_config(run_dir / "config.yaml", list(overrides))
    if config.model.trust_remote_code:
        raise EmoscaleError(
            f"{run_dir} was trained with model.trust_remote_code=true; "
            "predict and eval never run code from a model folder"
        )
    check_run_files(run_dir, config)
    return config


def _trained_files(config: RunConfig) -> tuple[str, ...]:
    """What <run>/model holds for the run's method (load_trained reads them)."""
    if config.model.family == "fusion" or config.model.method == "full":
        return ("model.safetensors",)
    if config.model.method == "none":
        return ()
    return ("adapter_config.json", "adapter_model.safetensors")


# The JSON files of a finished run that eval, predict and export read (run_folder.py lists them).
RUN_JSON = (
    "metrics.json",
    "run.json",
    "corpus.json",
    "model/labels.json",
    "model/adapter_config.json",
)


def check_run_files(run_dir: Path, config: RunConfig) -> None:
    """A damaged run folder (a file truncated by a full disk, edited by hand) is one line before
    any model loads: the trained weights the config's method saves are there (a missing
    adapter_config.json was PEFT's traceback), every JSON file it holds parses (labels.json to a
    list, the others to an object), every safetensors file holds the bytes its header names.
    PEFT, safetensors and json failed with tracebacks."""
    from emoscale.models.model_folder import safetensors_header

    for name in _trained_files(config):
        if (
            not (run_dir / "model" / name).is_file()
            and not (run_dir / "model" / f"{name}.index.json").is_file()
        ):
            raise DataError(f"{run_dir / 'model'}: no {name} (did the run finish?)")

    for name in RUN_JSON:
        if (run_dir / name).is_file():
            value = read_json(run_dir / name, finite=name != "run.json")
            expected = list if name.endswith("labels.json") else dict
            if not isinstance(value, expected):
                kind = "a JSON list" if expected is list else "a JSON object"
                raise DataError(f"{run_dir / name}: expected {kind}")
    headers = {
        path: safetensors_header(path, None)
        for path in sorted((run_dir / "model").glob("*.safetensors"))
    }
    _check_lora_rank(run_dir / "model", headers)


def _check_lora_rank(folder: Path, headers: dict[Path, dict]) -> None:
    """adapter_config.json's rank `r` is the rank of the saved LoRA tensors (an edited config
    failed inside PEFT's load with a size-mismatch traceback, after the base model loaded)."""
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        return
    adapter = read_json(config_file)
    rank = adapter.get("r")
    if (
        adapter.get("peft_type") != "LORA"
        or adapter.get("rank_pattern")
        or not isinstance(rank, int)
    ):
        return
    for path, header in headers.items():
        for name, entry in header.items():
            if (
                ".lora_A." in name
                and isinstance(entry, dict)
                and (entry.get("shape") or [rank])[0] != rank
            ):
                raise DataError(
                    f"{config_file}: r is {rank} but {path.name} holds {name} of rank "
                    f"{entry['shape'][0]}; the adapter config does not belong to these weights"
                )


def run_labels(run_dir: Path) -> tuple[str, ...]:
    """The labels the run was trained on, in its order (metrics.json keeps per-class results)."""
    metrics = read_json(run_dir / "metrics.json")
    try:
        return tuple(metrics["test"]["per_class"])
    except (KeyError, TypeError):
        raise DataError(
            f"{run_dir / 'metrics.json'}: no test.per_class (the run's labels)"
        ) from None


def _safetensors_only(folder: Path, expected: str) -> Path:
    if not (folder / expected).is_file() and not (folder / f"{expected}.index.json").is_file():
        raise EmoscaleError(
            f"{folder}: no {expected} (emoscale loads trained weights from safetensors only)"
        )
    return folder


def load_trained(run_dir: Path, config: RunConfig, family) -> torch.nn.Module:
    """The run's model: the base rebuilt from the config, the trained tensors from <run>/model."""
    folder = run_dir / "model"
    if config.model.family == "fusion":
        from safetensors.torch import load_file

        model = family.build_model()
        state = load_file(str(_safetensors_only(folder, "model.safetensors") / "model.safetensors"))
        result = model.load_state_dict(state, strict=False)  # the frozen encoder is not saved
        trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        lost = sorted(trained & set(result.missing_keys))
        if result.unexpected_keys or lost:
            name = (result.unexpected_keys or lost)[0]
            problem = (
                "holds a tensor the model does not have" if result.unexpected_keys else "lacks"
            )
            raise EmoscaleError(f"{folder}/model.safetensors {problem} {name!r}")
        return model
    from peft import PeftModel

    from emoscale.models import adapters, base_model
    from emoscale.models.prompted_lm import PromptedLM

    if config.model.method != "full":  # an adapter only fits the weights it was trained on
        base_model.check(run_dir, config.model.path)
    base = config.model_copy(deep=True)
    if config.model.method == "full":  # the saved folder is the whole model
        base.model.path = str(_safetensors_only(folder, "model.safetensors"))
    base.model.method = "none"  # the base as loaded for training, nothing trainable
    lm = adapters.load_model(base)
    if config.model.method not in ("none", "full"):
        _safetensors_only(folder, "adapter_model.safetensors")
        lm = PeftModel.from_pretrained(lm, folder, is_trainable=False)
    return PromptedLM(lm)


def build(run_dir: Path, config: RunConfig, corpus: Corpus):
    """(family, model on its device, accelerator) for `corpus` with the run's trained weights."""
    from accelerate import Accelerator

    from emoscale.models import build_family

    family = build_family(config, corpus)
    if getattr(family, "reader", None) is not None:
        family.reader.cache_budget = 0  # each clip is read once here: keeping it only costs memory
    if config.model.family == "fusion" and tuple(family.label_names) != run_labels(run_dir):
        raise DataError(
            f"{corpus.info.name} has labels {list(family.label_names)}; "
            f"the run's classifier predicts {list(run_labels(run_dir))}"
        )
    accelerator = Accelerator(mixed_precision=config.train.mixed_precision)
    model = accelerator.prepare_model(load_trained(run_dir, config, family), evaluation_mode=True)
    model.eval()
    return family, model, accelerator


# --- eval ----------------------------------------------------------------------------------------


def evaluate_run(
    run_dir: str | Path,
    overrides: list[str] = (),
    split: str = "test",
    out: str | Path | None = None,
) -> dict:
    """Metrics of the run on `split` of its (possibly overridden) corpus; with `out`, a folder
    holding config.yaml, eval.json, metrics.json, predictions.jsonl and confusion_matrix.png."""
    from emoscale.data import load_corpus
    from emoscale.evaluation import plots
    from emoscale.training.distributed_eval import evaluate, shard_for_evaluation
    from emoscale.training.run_folder import prediction_record

    run_dir = Path(run_dir)
    config = run_config(run_dir, overrides)
    if out is not None:  # never into a folder holding anything, the run or an input
        from emoscale.training.run_folder import check_new_output

        check_new_output(Path(out), config, run_dir)
    corpus = load_corpus(config.data)
    examples = corpus.split(split)
    if not examples:
        raise DataError(f"{corpus.info.name} {split}: no examples")
    family, model, accelerator = build(run_dir, config, corpus)
    loader = family.dataloader(examples, train=False, seed=config.seed, split=split)
    metrics, predictions, scores, texts = evaluate(
        accelerator, family, model, shard_for_evaluation(loader, accelerator), examples,
        config.eval.mode == "generate",
    )  # fmt: skip
    for example, label_scores in zip(examples, scores, strict=True):
        if not all(math.isfinite(score) for score in label_scores):  # before anything is written
            raise DataError(
                f"{corpus.info.name} {split}: the run scored example {example.id!r} "
                f"{[score for score in label_scores if not math.isfinite(score)][0]} "
                "(not a finite number); nothing is written"
            )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        record = {"run": str(run_dir), "split": split, "overrides": list(overrides)}
        (out / "eval.json").write_text(json.dumps(record, indent=2))
        (out / "metrics.json").write_text(json.dumps({split: metrics}, indent=2))
        with open(out / "predictions.jsonl", "w") as handle:
            for index, example in enumerate(examples):
                row = prediction_record(
                    example, split, family.label_names, predictions[index], scores[index],
                    texts[index] if texts is not None else None,
                )  # fmt: skip
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        plots.confusion_matrix(
            metrics["confusion_matrix"], family.label_names, out / "confusion_matrix.png"
        )
    return metrics


# --- predict -------------------------------------------------------------------------------------


def read_inputs(
    lines: list[str],
    modalities: str | None,
    base: Path,
    numbers: list[int] | None = None,
    source: str | Path | None = None,
) -> list[Example]:
    """Examples from input lines: a text per line (prompt LM, fusion text-only); for fusion with
    audio, `audio_path<TAB>transcript` (audio only: `audio_path`), paths relative to `base`.
    An error names `source:line` where the lines come from a file (`numbers`: their line numbers
    in it, for a streamed chunk), else `input line N`."""
    examples = []
    for position, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        number = numbers[position - 1] if numbers else position
        where = f"{source}:{number}" if source else f"input line {number}"
        text, audio = line, None
        if modalities in ("audio", "both"):
            audio, _, text = line.partition("\t")
            if modalities == "both" and not text.strip():
                raise DataError(f"{where}: expected audio_path<TAB>transcript")
            audio = str((base / audio.strip()).resolve())
        examples.append(Example(id=f"input-{position}", text=text, label=0, audio_path=audio))
    if not examples:
        raise DataError("no input: give one text per line (fusion runs: audio_path<TAB>transcript)")
    return examples


def read_corpus_info(path: Path) -> CorpusInfo:
    """A run's corpus.json as train wrote it: CorpusInfo's keys, the label lists of strings and of
    one length, the rest text. An edited one (`{}`, a key dropped) was a KeyError traceback."""
    saved = read_json(path)  # an object: check_run_files saw to it
    fields = {item.name for item in dataclasses.fields(CorpusInfo)}
    unknown = sorted(set(saved) - fields)
    if unknown:
        raise DataError(f"{path}: unknown key {unknown[0]!r}; corpus.json holds {sorted(fields)}")
    for key in ("name", "label_names", "label_words"):
        if key not in saved:
            raise DataError(f"{path}: key {key!r} is missing")
    for key, value in saved.items():
        is_list = key in ("label_names", "label_words")
        good = (
            isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value)
            if is_list
            else isinstance(value, str)
        )
        if not good:
            expected = "a list of at least two strings" if is_list else "a string"
            raise DataError(f"{path}: key {key!r} is {json.dumps(value)[:60]}, expected {expected}")
    if len(saved["label_names"]) != len(saved["label_words"]):
        raise DataError(
            f"{path}: {len(saved['label_names'])} label_names but "
            f"{len(saved['label_words'])} label_words"
        )
    return CorpusInfo(**saved | {key: tuple(saved[key]) for key in ("label_names", "label_words")})


def corpus_info(run_dir: Path, config: RunConfig) -> CorpusInfo:
    """Labels, label words and prompt template, as the run saved them in corpus.json; runs made
    before it existed read them from the corpus (data.path), fusion runs from model/labels.json."""
    if (run_dir / "corpus.json").is_file():
        return read_corpus_info(run_dir / "corpus.json")
    if config.model.family == "fusion":
        path = run_dir / "model" / "labels.json"
        labels = tuple(read_json(path))
        if len(labels) < 2 or not all(isinstance(label, str) for label in labels):
            raise DataError(f"{path}: expected a list of at least two labels (strings)")
        return CorpusInfo(config.data.dataset, labels, labels)
    from emoscale.data import load_corpus

    try:
        return load_corpus(config.data).info
    except EmoscaleError as error:
        raise DataError(
            f"predict reads the label words and prompt of the run's corpus, which failed: {error} "
            "(point data.path=... at the corpus)"
        ) from None


def predict(
    run_dir: str | Path,
    lines: list[str] | None = None,
    base: Path = Path("."),
    overrides: list[str] = (),
    source: str | None = None,
) -> list[dict]:
    """One dict per input: text (and audio_path), label, scores (per label) and probabilities.
    Inputs are `lines` (audio paths relative to `base`), or else read from `source` (read_lines)."""
    run_dir = Path(run_dir)
    for item in overrides:  # the labels are the run's (corpus.json): only `eval` changes corpus
        if item.partition("=")[0] in LABEL_KEYS:
            raise ConfigError(
                f"override {item!r}: predict answers with the run's own labels; "
                "to score another corpus use emoscale eval"
            )
    config = run_config(run_dir, overrides)  # checked before waiting for input on stdin
    where = None  # how an error names the inputs: the --input file or stdin; None: given lines
    if lines is None:
        lines, base = read_lines(source)
        where = "stdin" if source in (None, "-") else str(source)
    modalities = config.model.modalities if config.model.family == "fusion" else None
    examples = read_inputs(lines, modalities, base, source=where)
    corpus = Corpus(corpus_info(run_dir, config), {"predict": examples})
    family, model, accelerator = build(run_dir, config, corpus)
    examples = corpus.split("predict")  # unchanged unless data.skip_bad_audio dropped some
    found = answers(family, model, examples, config.seed, accelerator.device)
    return [
        prediction_row(
            example,
            *found[index],
            family.label_names,
            f"{where or 'input'}:{example.id.removeprefix('input-')}",
        )
        for index, example in enumerate(examples)
    ]


def answers(
    family: ModelFamily,
    model: torch.nn.Module,
    examples: list[Example],
    seed: int,
    device: torch.device,
) -> dict[int, tuple[int, list[float], str | None]]:
    """{position in examples: (predicted label index, per-label scores, generated answer text or
    None)}, in eval batches; the text only in generate mode (models/family.py)."""
    loader = family.dataloader(examples, train=False, seed=seed, split="predict")
    found = {}
    with torch.no_grad():
        for batch in loader:
            batch = {key: value.to(device) for key, value in batch.items()}
            predicted, scores, texts = predict_with_answers(family, model, batch)
            texts = texts if texts is not None else [None] * len(predicted)
            for index, label, row, text in zip(
                batch["example_index"], predicted, scores.float(), texts, strict=True
            ):
                found[int(index)] = (int(label), row.tolist(), text)
    return found


def prediction_row(
    example: Example,
    label: int,
    scores: list[float],
    answer: str | None,
    names: tuple[str, ...],
    where: str,
) -> dict:
    """One input's answer: text (and audio_path), label, per-label scores and probabilities, and
    in generate mode the model's own answer text (`answer`; label null where it named no label).
    A score that is not finite is refused, naming the input at `where`: a NaN is never a
    prediction (issue 12), whether predict prints it or the streaming path writes it."""
    if not all(math.isfinite(score) for score in scores):
        bad = next(score for score in scores if not math.isfinite(score))
        raise DataError(
            f"{where}: the run scored this input {bad} (not a finite number); no prediction is given"
        )
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]  # softmax over the labels
    row = {"text": example.text}
    if example.audio_path:
        row["audio_path"] = example.audio_path
    row |= {
        "label": names[label] if label >= 0 else None,
        "scores": dict(zip(names, scores, strict=True)),
        "probabilities": {name: w / sum(weights) for name, w in zip(names, weights, strict=True)},
    }
    return row if answer is None else row | {"answer": answer}


def format_prediction(result: dict) -> str:
    """label<TAB>p(label1) ... <TAB>text: one line a person reads and a script splits."""
    probabilities = " ".join(f"{name}={p:.3f}" for name, p in result["probabilities"].items())
    source = result.get("audio_path", "")
    text = f"{source}\t{result['text']}" if source else result["text"]
    return f"{result['label'] or '(invalid)'}\t{probabilities}\t{text}"


def read_lines(source: str | None) -> tuple[list[str], Path]:
    """Input lines from a file, or from stdin for None or '-'; relative audio paths start at base.
    Read as bytes and decoded strictly: a non-UTF-8 byte is one line naming the input and line."""
    if source in (None, "-"):
        text = decode_utf8(sys.stdin.buffer.read(), "stdin", "give the input as UTF-8")
        return text.splitlines(), Path(".")
    file = Path(source)
    if file.is_dir():
        raise DataError(f"--input {file} is a folder; give a file with one input per line")
    if not file.is_file():
        raise DataError(f"--input {file} does not exist")
    return decode_utf8(file.read_bytes(), file).splitlines(), file.parent
