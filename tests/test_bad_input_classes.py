"""Issue 12's classes of bad input, several cases each: one exact `error:` line, exit code 2, no
traceback and nothing half-written; class 1 also hashes every file of a user folder, a corpus
folder and a model folder before and after. Run in-process through the entry point (fast)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from corpus_files import (
    clip,
    data_config,
    write_friends,
    write_iemocap,
    write_label_csv,
    write_m3ed,
    write_mastodon,
    write_meld,
)

from emoscale import train
from emoscale.data import load_corpus
from emoscale.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digest(folder: Path) -> dict[str, str]:
    """Every file under folder (relative path -> sha256): what must survive a refused run."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def refused(capsys, overrides: list[str], expect_run_dir: Path | None = None) -> str:
    """Run the entry point; assert exit code 2, one stderr line, no traceback; return that line."""
    code = train.main(overrides)
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-2000:]
    if expect_run_dir is not None:
        assert not expect_run_dir.exists()  # nothing half-written
    return lines[0]


@pytest.fixture
def corpus_copy(demo_corpus, tmp_path):
    return shutil.copytree(demo_corpus, tmp_path / "corpus")


# --- 1. data loss ------------------------------------------------------------------------------


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "notes.txt").write_text("six months of work\n")
    (folder / "chapters" / "one.tex").write_text("\\chapter{One}\n")
    return folder


def without_output_dir(overrides: list[str]) -> list[str]:
    return [item for item in overrides if not item.startswith("output_dir=")]


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_folder_emoscale_did_not_write_is_never_replaced(
    capsys, run_overrides, user_folder, flags
):
    before = digest(user_folder)
    line = refused(
        capsys, [*without_output_dir(run_overrides), f"output_dir={user_folder}", *flags]
    )
    assert line == (
        f"error: output_dir {user_folder} is not an emoscale run folder (it holds chapters, "
        "notes.txt); emoscale never replaces what it did not write: choose a new or empty folder"
    )
    assert digest(user_folder) == before


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("data.path", lambda corpus, model: corpus),
        ("model.path", lambda corpus, model: model),
        ("data.path", lambda corpus, model: corpus / "runs" / "a"),
        ("data.path", lambda corpus, model: corpus.parent),
    ],
    ids=["corpus", "model", "inside_corpus", "contains_corpus"],
)
def test_an_input_folder_is_never_the_run_folder(
    capsys, run_overrides, corpus_copy, tiny_llama, tmp_path, key, where, flags
):
    model = shutil.copytree(tiny_llama, tmp_path / "model")
    before = {corpus_copy: digest(corpus_copy), model: digest(model)}
    overrides = without_output_dir(run_overrides) + [
        f"data.path={corpus_copy}",
        f"model.path={model}",
    ]
    output = where(corpus_copy, model)
    line = refused(capsys, [*overrides, f"output_dir={output}", *flags])
    value = corpus_copy if key == "data.path" else model
    relation = {corpus_copy: "is", model: "is", corpus_copy.parent: "contains"}.get(
        output, "is inside"
    )
    assert line == (
        f"error: output_dir {output} {relation} {key} {value}; "
        "a run folder must be apart from the folders it reads"
    )
    assert {folder: digest(folder) for folder in before} == before


def test_the_working_directory_and_home_are_never_run_folders(
    capsys, run_overrides, monkeypatch, user_folder
):
    monkeypatch.chdir(user_folder)
    before = digest(user_folder)
    line = refused(capsys, [*without_output_dir(run_overrides), "output_dir=.", "--overwrite"])
    assert line == (
        "error: output_dir . is the working directory; choose a folder of its own, e.g. runs/NAME"
    )
    home = Path.home()
    line = refused(capsys, [*without_output_dir(run_overrides), f"output_dir={home}"])
    assert line == (
        f"error: output_dir {home} is the home folder; choose a folder of its own, e.g. runs/NAME"
    )
    line = refused(capsys, [*without_output_dir(run_overrides), f"output_dir={home.parent}"])
    assert line.startswith(f"error: output_dir {home.parent} contains ")
    assert digest(user_folder) == before


def test_resume_and_overwrite_together_are_refused(capsys, run_overrides, tmp_path):
    line = refused(capsys, [*run_overrides, "--resume", "--overwrite"], tmp_path / "run")
    assert line == (
        "error: --resume and --overwrite contradict each other: --resume continues the run in "
        "output_dir, --overwrite replaces it; pass one"
    )


def test_output_dir_that_is_a_file_or_unwritable(capsys, run_overrides, tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("mine\n")
    base = without_output_dir(run_overrides)
    line = refused(capsys, [*base, f"output_dir={file}"])
    assert line == f"error: output_dir {file} is a file, not a folder"
    line = refused(capsys, [*base, f"output_dir={file / 'run'}"])
    assert (
        line == f"error: output_dir {file / 'run'} is inside {file}, which is a file, not a folder"
    )
    assert file.read_text() == "mine\n"
    locked = Path("/sys/emoscale-run")  # sysfs refuses new entries, even to root
    line = refused(capsys, [*base, f"output_dir={locked}"])
    assert (
        line
        == "error: output_dir /sys/emoscale-run: cannot write in /sys (Operation not permitted)"
    )


def test_a_run_that_died_before_its_first_checkpoint_reruns_and_resumes(
    capsys, run_overrides, tmp_path
):
    run_dir = tmp_path / "run"
    quick = [*run_overrides, "train.max_steps=1"]
    for flags in ([], ["--resume"]):
        # What a run killed during its first step leaves: the mark, config, run.json, TensorBoard,
        # no checkpoint.
        shutil.rmtree(run_dir, ignore_errors=True)
        (run_dir / "tensorboard").mkdir(parents=True)
        (run_dir / ".emoscale-run").write_text("")
        (run_dir / "config.yaml").write_text("seed: 1\n")
        (run_dir / "run.json").write_text("{}")
        assert train.main([*quick, *flags]) == 0, capsys.readouterr().err[-2000:]
        assert json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"] >= 0
    # A finished run is kept unless asked.
    line = refused(capsys, quick)
    assert line == (
        f"error: output_dir {run_dir} already holds a run; "
        "pass --resume to continue it or --overwrite to replace it"
    )


def test_another_ranks_write_probe_is_not_a_foreign_name(run_overrides, tmp_path):
    """Every rank checks the run folder, and the writability check makes a short-lived probe
    folder in it: a rank listing the folder at that moment once refused a ZeRO-2 resume."""
    from emoscale.config import load_config
    from emoscale.errors import EmoscaleError
    from emoscale.training import run_folder

    run_dir = tmp_path / "run"
    assert train.main([*run_overrides, "train.max_steps=1"]) == 0
    (run_dir / ".emoscale-probe-x1y2").mkdir()  # rank 1's probe, caught mid-check
    config = load_config(overrides=run_overrides)
    assert run_folder.check(run_dir, resume=True, overwrite=False, config=config) is True
    (run_dir / "notes.txt").write_text("mine")  # a name of anyone else's still is foreign
    with pytest.raises(EmoscaleError, match=r"it holds notes\.txt\)"):
        run_folder.check(run_dir, resume=True, overwrite=False, config=config)


@pytest.mark.parametrize(
    "flags", [[], ["--overwrite"], ["--resume"]], ids=["plain", "overwrite", "resume"]
)
def test_a_user_folder_with_run_like_names_is_not_a_run_folder(
    capsys, run_overrides, tmp_path, flags
):
    """Names alone do not make a folder emoscale's: a user's experiment folder with its own
    config.yaml, model/ and checkpoints/ (another tool's) stays whole, whatever the flags."""
    folder = tmp_path / "exp"
    (folder / "model").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "config.yaml").write_text("# my hand-written notes\nseed: 3\n")
    (folder / "model" / "finetuned.safetensors").write_bytes(b"weights of another project")
    (folder / "checkpoints" / "epoch3.ckpt").write_bytes(b"lightning")
    before = digest(folder)
    line = refused(capsys, [*without_output_dir(run_overrides), f"output_dir={folder}", *flags])
    assert line == (
        f"error: output_dir {folder} is not an emoscale run folder (it holds checkpoints, "
        "config.yaml, model); emoscale never replaces what it did not write: choose a new or "
        "empty folder"
    )
    assert digest(folder) == before


def test_resume_with_a_broken_latest_pointer_keeps_every_checkpoint(
    capsys, run_overrides, tmp_path
):
    """A `latest` naming a checkpoint that is gone (deleted as damaged, mistyped) must not make the
    run look unstarted: that would start it afresh and delete the intact checkpoints."""
    run_dir = tmp_path / "run"
    quick = [*run_overrides, "train.max_steps=2", "train.save_every_steps=1"]
    assert train.main(quick) == 0, capsys.readouterr().err[-2000:]
    (run_dir / "checkpoints" / "latest").write_text("step-00000099\n")
    before = digest(run_dir / "checkpoints")
    line = refused(capsys, [*quick, "--resume"])
    assert line == (
        f"error: --resume: {run_dir / 'checkpoints' / 'latest'} names no saved checkpoint; write "
        "the name of one of step-00000001, step-00000002 into it"
    )
    assert digest(run_dir / "checkpoints") == before


def test_overwrite_replaces_only_what_emoscale_wrote(capsys, run_overrides, tmp_path):
    run_dir = tmp_path / "run"
    assert train.main([*run_overrides, "train.max_steps=1"]) == 0
    (run_dir / "mine.txt").write_text("a note in the run folder\n")
    line = refused(capsys, [*run_overrides, "train.max_steps=1", "--overwrite"])
    assert line.startswith(
        f"error: output_dir {run_dir} is not an emoscale run folder (it holds mine.txt)"
    )
    assert (run_dir / "mine.txt").read_text() == "a note in the run folder\n"


# --- 2. corpus files that would parse into a wrong corpus ---------------------------------------

HEADER = "text,label\n"


def corpus_with_test(folder: Path, demo_corpus: Path, test: str | bytes, extension="csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        shutil.copy(demo_corpus / f"{split}.csv", folder / f"{split}.csv")
    data = test.encode() if isinstance(test, str) else test
    (folder / f"test.{extension}").write_bytes(data)
    return folder


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (HEADER + "fine film,positive\nodd film,\n", "3: empty label"),
        (HEADER + "fine film,positive\nodd film,  \n", "3: empty label"),
        (
            HEADER + "fine film,positive\nodd film\n",
            "3: 1 fields, the header has 2 (quote a text that holds a comma)",
        ),
        (
            HEADER + "fine, really fine film,positive\n",
            "2: 3 fields, the header has 2 (quote a text that holds a comma)",
        ),
        (HEADER + '"fine film,positive\nbad film,negative\n', "2: a quoted field is never closed"),
        (
            HEADER + '"fine" film,positive\n',
            "2: malformed quoting (',' expected after '\"'); write a quote inside a quoted field as \"\"",
        ),
        ("text,label,text\nfine film,positive,x\n", "1: column 'text' appears twice"),
        (
            HEADER.encode() + "caf\xe9 film,positive\n".encode("latin-1"),
            "2: not UTF-8 (byte 0xe9); save the file as UTF-8",
        ),
        (
            HEADER + "fine film,positive\nodd film,Positive\n",
            "3: label 'Positive' is not one of ['negative', 'neutral', 'positive']",
        ),
    ],
    ids=[
        "empty_label",
        "space_label",
        "short_row",
        "unquoted_comma",
        "open_quote",
        "quote_then_text",
        "repeated_column",
        "latin1",
        "case_twin",
    ],
)
def test_malformed_csv_rows(capsys, run_overrides, demo_corpus, tmp_path, content, problem):
    folder = corpus_with_test(tmp_path / "corpus", demo_corpus, content)
    overrides = [item for item in run_overrides if not item.startswith("data.labels")]
    line = refused(capsys, [*overrides, f"data.path={folder}"], tmp_path / "run")
    assert line == f"error: {folder / 'test.csv'}:{problem}"


def tsv_corpus(folder: Path, demo_corpus: Path, test_rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        rows = (demo_corpus / f"{split}.csv").read_text().splitlines()
        (folder / f"{split}.tsv").write_text(
            "\n".join(row.replace(",", "\t") for row in rows) + "\n"
        )
    (folder / "test.tsv").write_text("text\tlabel\n" + "\n".join(test_rows) + "\n")
    return folder


def test_tsv_has_no_quoting_so_a_quote_swallows_nothing(run_overrides, demo_corpus, tmp_path):
    from emoscale.config import load_config
    from emoscale.data import load_corpus

    rows = ['"Great," she said. A fine film\tpositive'] + [
        f"film number {i}\tneutral" for i in range(39)
    ]
    folder = tsv_corpus(tmp_path / "corpus", demo_corpus, rows)
    config = load_config(overrides=[*run_overrides, f"data.path={folder}", "data.dataset=tsv"])
    test = load_corpus(config.data).split("test")
    assert len(test) == 40
    assert test[0].text == '"Great," she said. A fine film'


def test_tsv_row_with_an_extra_tab(capsys, run_overrides, demo_corpus, tmp_path):
    folder = tsv_corpus(tmp_path / "corpus", demo_corpus, ["fine\tfilm\tpositive"])
    line = refused(
        capsys, [*run_overrides, f"data.path={folder}", "data.dataset=tsv"], tmp_path / "run"
    )
    assert line == f"error: {folder / 'test.tsv'}:2: 3 fields, the header has 2"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"text": "fine film", "label": None}, "label is null, expected a string"),
        ({"text": None, "label": "positive"}, "text is null, expected a string"),
        ({"text": "fine film", "label": ["positive"]}, 'label is ["positive"], expected a string'),
        ({"text": "fine film", "label": ""}, "empty label"),
        ({"text": "fine film"}, "missing column 'label' (columns: text)"),
        ('{"text": "fine", "label": "positive", "label": "negative"}', "key 'label' appears twice"),
        ('{"text": "fine", "label": "posi', "not valid JSON (Unterminated string starting at)"),
        ('{"text": NaN, "label": "positive"}', "NaN is not JSON (Python's json reads it)"),
    ],
    ids=[
        "null_label",
        "null_text",
        "list_label",
        "empty_label",
        "no_label",
        "repeated_key",
        "broken_json",
        "nan_text",  # round 6: read as the text "nan"
    ],
)
def test_malformed_jsonl_rows(capsys, run_overrides, demo_corpus, tmp_path, row, problem):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split in ("train", "dev"):
        lines = (demo_corpus / f"{split}.csv").read_text().splitlines()[1:]
        records = [dict(zip(("text", "label"), line.rsplit(",", 1), strict=True)) for line in lines]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    good = json.dumps({"text": "fine film", "label": "positive"})
    (folder / "test.jsonl").write_text(
        good + "\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n"
    )
    line = refused(
        capsys, [*run_overrides, f"data.path={folder}", "data.dataset=jsonl"], tmp_path / "run"
    )
    assert line == f"error: {folder / 'test.jsonl'}:2: {problem}"


def test_labels_differing_only_in_case_in_train(capsys, run_overrides, demo_corpus, tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(demo_corpus, folder)
    with open(folder / "train.csv", "a") as handle:
        handle.write("a grim film,Negative\n")
    overrides = [item for item in run_overrides if not item.startswith("data.labels")]
    line = refused(capsys, [*overrides, f"data.path={folder}"], tmp_path / "run")
    first = next(
        number
        for number, text in enumerate((demo_corpus / "train.csv").read_text().splitlines(), 1)
        if text.endswith(",negative")
    )
    assert line == (
        f"error: {folder / 'train.csv'}:482: label 'Negative' differs from 'negative' "
        f"({folder / 'train.csv'}:{first}) only in case; use one spelling"
    )


def test_a_non_integer_turn(capsys, run_overrides, demo_corpus, tmp_path):
    folder = corpus_with_test(
        tmp_path / "corpus", demo_corpus, "text,label,turn\nfine film,positive,first\n"
    )
    line = refused(capsys, [*run_overrides, f"data.path={folder}"], tmp_path / "run")
    assert line == f"error: {folder / 'test.csv'}:2: turn 'first' is not a whole number >= 0"


def test_a_huge_field_is_accepted_and_truncated(run_overrides, demo_corpus, tmp_path):
    from emoscale.config import load_config
    from emoscale.data import load_corpus

    huge = "word " * 40_000  # 200,000 characters: past Python csv's default field limit
    folder = corpus_with_test(tmp_path / "corpus", demo_corpus, f'{HEADER}"{huge}",positive\n')
    config = load_config(overrides=[*run_overrides, f"data.path={folder}"])
    assert len(load_corpus(config.data).split("test")[0].text) == 200_000


# --- 3. label sets and label words ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["data.labels=[positive,positive,negative]"],
            "config key 'data.labels': 'positive' appears twice",
        ),
        (
            ["data.labels=[positive,Positive,negative]"],
            "config key 'data.labels': 'positive' and 'Positive' differ only in case or spaces",
        ),
        (["data.labels=[positive,'',negative]"], "config key 'data.labels': an empty label"),
        (["prompt.labels=[Good,Good,Meh]"], "config key 'prompt.labels': 'Good' appears twice"),
        (["prompt.labels=[Good,' ',Meh]"], "config key 'prompt.labels': an empty label"),
        (
            ["prompt.labels=[Good,Bad]"],
            "config key 'prompt.labels': 2 label words for the 3 labels of data.labels",
        ),
    ],
    ids=["dup_class", "case_class", "empty_class", "dup_word", "empty_word", "word_count"],
)
def test_impossible_label_lists(capsys, run_overrides, tmp_path, overrides, line):
    assert refused(capsys, [*run_overrides, *overrides], tmp_path / "run") == f"error: {line}"


def test_label_words_with_the_same_answer_tokens(tiny_llama):
    from transformers import AutoTokenizer

    from emoscale.errors import ConfigError
    from emoscale.models.label_scoring import check_label_words

    # A byte-level tokenizer tells any two strings apart; a tokenizer with an unknown token (or a
    # normalizer) may not: stand in for it by mapping every non-ASCII byte's token to one id.
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    words = ("好", "坏", "Neutral")
    answers = [tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in words]
    unk = tokenizer.unk_token_id or 0
    answers = [
        [unk if not w.isascii() else i for i in ids] for w, ids in zip(words, answers, strict=True)
    ]
    answers[1] = answers[0][:]
    check_label_words(("a", "b", "c"), ("Good", "Bad", "Neutral"), [[1], [2], [3]])
    with pytest.raises(ConfigError) as caught:
        check_label_words(("a", "b", "c"), words, answers)
    assert str(caught.value) == (
        f"config key 'prompt.labels': '好' and '坏' are the same answer tokens {answers[0]} "
        "for this tokenizer; choose words it tells apart"
    )


def test_too_few_words_for_a_corpus_label_set(capsys, run_overrides, tmp_path):
    overrides = [item for item in run_overrides if not item.startswith("data.labels")]
    line = refused(capsys, [*overrides, "prompt.labels=[Good]"], tmp_path / "run")
    assert line == (
        "error: config key 'prompt.labels': 1 label words for the 3 labels "
        "['negative', 'neutral', 'positive']"
    )


# --- 4/5. config values that fail later: templates, seeds, non-finite numbers ---------------------


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (
            "prompt.template={text} {",
            "config key 'prompt.template': Single '{' encountered in format string; write a literal brace as {{ or }}",
        ),
        (
            "prompt.template={text} {foo}",
            "config key 'prompt.template': unknown placeholder {foo}; only {text} and {labels} are filled in (write a literal brace as {{ or }})",
        ),
        (
            "prompt.template={text} {0}",
            "config key 'prompt.template': unknown placeholder {0}; only {text} and {labels} are filled in (write a literal brace as {{ or }})",
        ),
        (
            "prompt.template=Rate: {text} }",
            "config key 'prompt.template': Single '}' encountered in format string; write a literal brace as {{ or }}",
        ),
        ("seed=-1", "config key 'seed': Input should be greater than or equal to 0 (got -1)"),
        (
            "seed=4294967296",
            "config key 'seed': Input should be less than 4294967296 (got 4294967296)",
        ),
        ("train.lr=.inf", "config key 'train.lr': Input should be a finite number (got inf)"),
        ("train.lr=nan", "config key 'train.lr': Input should be a finite number (got 'nan')"),
        (
            "train.weight_decay=.nan",
            "config key 'train.weight_decay': Input should be a finite number (got nan)",
        ),
        (
            "data.max_seconds=inf",
            "config key 'data.max_seconds': Input should be a finite number (got 'inf')",
        ),
        (
            "train.max_grad_norm=.inf",
            "config key 'train.max_grad_norm': Input should be a finite number (got inf)",
        ),
        (
            "output_dir=",
            "config key 'output_dir': String should have at least 1 character (got '')",
        ),
        ("data.path=", "config key 'data.path': String should have at least 1 character (got '')"),
        (
            "train.lr=[1",
            "override train.lr=[1: not a valid YAML value (expected ',' or ']', but got '<stream end>')",
        ),
    ],
)
def test_config_values_refused_up_front(capsys, run_overrides, tmp_path, override, line):
    assert refused(capsys, [*run_overrides, override], tmp_path / "run") == f"error: {line}"


# --- 6. configs that silently lose settings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (
            "train:\n  max_steps: 2\nseed: 3\ntrain:\n  epochs: 3\n",
            "4:1: duplicate key 'train' (first on line 1)",
        ),
        ("train:\n  lr: 0.1\n  lr: 0.2\n", "3:3: duplicate key 'lr' (first on line 2)"),
        ("seed: 1\nseed: 2\n", "2:1: duplicate key 'seed' (first on line 1)"),
        (
            "train: {max_steps: 2, max_steps: 5}\n",
            "1:23: duplicate key 'max_steps' (first on line 1, column 9)",
        ),
        (
            "train:\n\tlr: 0.1\n",
            "2:1: found character '\\t' that cannot start any token (YAML indents with spaces, not tabs)",
        ),
        ("train:\n  lr: [0.1\n", "3:1: expected ',' or ']', but got '<stream end>'"),
        (
            "train:\n  lr: 0.1\n bad: 2\n",
            "3:2: expected <block end>, but found '<block mapping start>'",
        ),
    ],
    ids=[
        "section_twice",
        "key_twice",
        "top_key_twice",
        "flow_key_twice",
        "tab",
        "open_list",
        "indent",
    ],
)
def test_config_files_that_would_lose_settings(capsys, run_overrides, tmp_path, yaml_text, problem):
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    line = refused(capsys, ["--config", str(path), *run_overrides], tmp_path / "run")
    assert line == f"error: config file {path}:{problem}"


def test_a_config_file_that_is_not_utf8(capsys, run_overrides, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("seed: 1\n# caf\xe9\n".encode("latin-1"))
    line = refused(capsys, ["--config", str(path), *run_overrides], tmp_path / "run")
    assert line == f"error: config file {path}: not UTF-8 text (byte 13: invalid continuation byte)"


# --- 4. broken model folders and checkpoints ------------------------------------------------------


def break_model(folder: Path, how: str) -> None:
    weights = folder / "model.safetensors"
    if how == "empty_weights":
        weights.write_bytes(b"")
    elif how == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif how == "random_weights":
        weights.write_bytes(bytes(range(256)) * 64)
    elif how == "no_weights":
        weights.unlink()
    elif how == "corrupt_config":
        (folder / "config.json").write_text('{"model_type": "llama",')
    elif how == "corrupt_tokenizer":
        (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    elif how == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
    elif how == "shape_mismatch":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"hidden_size": 32}))


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("empty_weights", "{m}/model.safetensors is empty"),
        ("truncated_weights", "{m}/model.safetensors is truncated ("),
        (
            "random_weights",
            "{m}/model.safetensors is not a safetensors file (its header length is impossible)",
        ),
        ("no_weights", "{m} has no weights (model.safetensors or pytorch_model.bin)"),
        (
            "corrupt_config",
            "{m}/config.json is not valid JSON (line 1 column 24: Expecting property name enclosed in double quotes)",
        ),
        (
            "corrupt_tokenizer",
            "{m}/tokenizer.json is not valid JSON (line 1 column 29: Expecting value)",
        ),
        (
            "no_tokenizer",
            "{m} has no tokenizer (tokenizer.json, tokenizer.model, vocab.json, vocab.txt, spiece.model)",
        ),
        (
            "shape_mismatch",
            "{m}/model.safetensors holds model.embed_tokens.weight of shape [{v}, 64], but config.json says vocab_size x hidden_size = [{v}, 32]",
        ),
    ],
)
def test_broken_model_folders(capsys, run_overrides, tiny_llama, tmp_path, how, problem):
    model = shutil.copytree(tiny_llama, tmp_path / "model")
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    for name in ("tokenizer.model", "vocab.json", "vocab.txt") if how == "no_tokenizer" else ():
        (model / name).unlink(missing_ok=True)
    break_model(model, how)
    line = refused(capsys, [*run_overrides, f"model.path={model}"], tmp_path / "run")
    expected = f"error: config key 'model.path': {problem.format(m=model, v=vocab)}"
    assert line.startswith(expected) if problem.endswith("(") else line == expected, line


def test_resume_from_a_damaged_checkpoint(capsys, run_overrides, tmp_path):
    import torch

    run_dir = tmp_path / "run"
    overrides = [*run_overrides, "train.max_steps=1"]
    assert train.main(overrides) == 0
    checkpoint = run_dir / "checkpoints" / "step-00000001"
    (checkpoint / "progress.json").write_text('{"step": 1,')
    line = refused(capsys, [*overrides, "--resume"])
    assert line == (
        f"error: {checkpoint / 'progress.json'}:1: not valid JSON (Expecting property name "
        "enclosed in double quotes); resume from an earlier checkpoint by pointing "
        "checkpoints/latest at it, or pass --overwrite"
    )
    (checkpoint / "progress.json").write_text('{"step": 1}')
    for name, keep in (
        ("model.safetensors", 100),
        ("optimizer.bin", 100),
        ("random_states_0.pkl", 100),
        ("scheduler.bin", 0),
    ):
        intact = (checkpoint / name).read_bytes()
        (checkpoint / name).write_bytes(intact[:keep])
        assert train.main([*overrides, "--resume"]) == 2
        out, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: checkpoint {checkpoint} ({name}) is damaged (")
        assert lines[0].endswith(
            "resume from an earlier one by pointing checkpoints/latest at it, or pass --overwrite"
        )
        assert "trainable parameters" not in out + err  # found before the model loads
        (checkpoint / name).write_bytes(intact)
    # torch's legacy (non-zip) format, which DeepSpeed writes with checkpoint_serialization off,
    # is not damage: the run resumes.
    optimizer = checkpoint / "optimizer.bin"
    state = torch.load(optimizer, weights_only=True)
    torch.save(state, optimizer, _use_new_zipfile_serialization=False)
    assert train.main([*overrides, "--resume"]) == 0


# --- 5. non-finite audio samples and scores ---------------------------------------------------------


def float_wave(path: Path, bad_value: float | None, at: int = 100) -> Path:
    import numpy as np
    import soundfile

    wave = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
    if bad_value is not None:
        wave[at] = bad_value
    soundfile.write(path, wave, 16_000, subtype="FLOAT")  # float samples: the kind that holds NaN
    return path


@pytest.mark.parametrize(("value", "shown"), [(float("nan"), "nan"), (float("-inf"), "-inf")])
def test_audio_with_nonfinite_samples_is_named(
    capsys, fusion_overrides, tone_corpus, tmp_path, value, shown
):
    corpus = shutil.copytree(tone_corpus, tmp_path / "corpus")
    float_wave(corpus / "wav/dev-0002.wav", value, at=123)
    line = refused(capsys, [*fusion_overrides, f"data.path={corpus}"], tmp_path / "run")
    assert line == (
        f"error: {corpus}/wav/dev-0002.wav: audio samples are not finite ({shown} at sample 123)"
    )


def test_audio_with_nonfinite_samples_is_skipped_and_counted(tone_corpus, tmp_path):
    from emoscale.config import load_config
    from emoscale.data.audio import check_corpus_audio
    from emoscale.data.generic import load

    corpus_dir = shutil.copytree(tone_corpus, tmp_path / "corpus")
    float_wave(corpus_dir / "wav/train-0003.wav", float("nan"))
    float_wave(corpus_dir / "wav/train-0004.wav", None)  # a clean float file is kept
    config = load_config(overrides=[f"data.path={corpus_dir}", "data.dataset=csv"])
    corpus = load(config.data)
    before = len(corpus.split("train"))
    check_corpus_audio(corpus, corpus_dir, skip_bad=True)
    assert len(corpus.split("train")) == before - 1
    assert dict(corpus.dropped) == {"audio: audio samples are not finite": 1}


@pytest.fixture(scope="module")
def nan_run(tiny_llama, demo_corpus, tmp_path_factory):
    """A finished zero-shot run (method none: nothing trains) on a base whose embeddings of '€'
    are NaN: any input holding '€' is scored NaN, as by a base model that overflowed."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from emoscale.tiny import demo

    root = tmp_path_factory.mktemp("nan_run")
    model = shutil.copytree(tiny_llama, root / "nan_model")
    tensors = load_file(str(model / "model.safetensors"))
    for token in AutoTokenizer.from_pretrained(model)("€", add_special_tokens=False)["input_ids"]:
        tensors["model.embed_tokens.weight"][token] = torch.nan
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    run_dir = root / "run"
    overrides = demo.overrides(demo_corpus, model) + ["model.method=none", f"output_dir={run_dir}"]
    assert train.main(overrides) == 0
    return run_dir


def cli_refused(capsys, argv: list[str]) -> str:
    """emoscale's command: exit code 2 and only the error line, on stderr; nothing on stdout."""
    from emoscale import cli

    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err[-2000:]
    assert captured.out == ""  # not one prediction, not a half-written JSON line
    lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err[-2000:]
    return lines[0]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_predict_never_prints_a_nonfinite_score(capsys, nan_run, tmp_path, as_json):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("A fine film.\nThe ticket cost 20 € and the film was awful.\n")
    line = cli_refused(
        capsys, ["predict", str(nan_run), "--input", str(inputs)] + ["--json"] * as_json
    )
    assert line == (
        f"error: {inputs}:2: the run scored this input nan (not a finite number); "
        "no prediction is given"
    )


def test_predict_json_is_valid_json(capsys, nan_run, tmp_path):
    from emoscale import cli

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("A fine film.\nA dull film.\n")
    assert cli.main(["predict", str(nan_run), "--input", str(inputs), "--json"]) == 0

    def no_constant(name):
        raise AssertionError(f"bare {name} in the JSON output")

    rows = [
        json.loads(line, parse_constant=no_constant)
        for line in capsys.readouterr().out.splitlines()
    ]
    assert [row["text"] for row in rows] == ["A fine film.", "A dull film."]
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-6 for row in rows)


def test_eval_refuses_a_nonfinite_score_before_writing(capsys, nan_run, demo_corpus, tmp_path):
    corpus = shutil.copytree(demo_corpus, tmp_path / "corpus")
    with open(corpus / "test.csv", "a") as handle:
        handle.write("The ticket cost 20 € and the film was awful.,negative\n")
    out = tmp_path / "eval"
    line = cli_refused(capsys, ["eval", str(nan_run), f"data.path={corpus}", "--out", str(out)])
    assert line == (
        "error: csv test: the run scored example 'test-96' nan (not a finite number); "
        "nothing is written"
    )
    assert not out.exists()


# --- 2/4. predict input that is not UTF-8 ------------------------------------------------------------


def test_predict_input_that_is_not_utf8(capsys, nan_run, tmp_path, monkeypatch):
    import io
    import sys

    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(b"A fine film.\n" + "caf\xe9 film\n".encode("latin-1"))
    line = cli_refused(capsys, ["predict", str(nan_run), "--input", str(inputs)])
    assert line == f"error: {inputs}:2: not UTF-8 (byte 0xe9); save the file as UTF-8"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(inputs.read_bytes())))
    line = cli_refused(capsys, ["predict", str(nan_run)])
    assert line == "error: stdin:2: not UTF-8 (byte 0xe9); give the input as UTF-8"
    line = cli_refused(capsys, ["predict", str(nan_run), "--input", str(tmp_path)])
    assert line == f"error: --input {tmp_path} is a folder; give a file with one input per line"


# --- 4. library lines before an error ----------------------------------------------------------------


def test_library_lines_are_held_until_the_input_is_checked():
    """DeepSpeed's "Setting accelerator to CPU" (logged the first time accelerate looks for a
    DeepSpeed engine) is dropped when the command ends in its error, printed when it succeeds.
    A fresh process: DeepSpeed logs it once per process."""
    import subprocess
    import sys

    script = (
        "from emoscale import library_logs\n"
        "library_logs.hold()\n"
        "from deepspeed.accelerator import get_accelerator\n"
        "get_accelerator()\n"
        "print('checked', flush=True)\n"
        "library_logs.{}()\n"
    )
    outputs = {}
    for ending in ("drop", "release"):
        result = subprocess.run(
            [sys.executable, "-c", script.format(ending)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[ending] = (result.stdout + result.stderr).splitlines()
    assert outputs["drop"] == ["checked"]
    assert outputs["release"][0] == "checked"
    assert outputs["release"][1].endswith(
        "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it."
    )


# --- 4. sharded weights ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharded_llama(tiny_llama, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("sharded")
    AutoModelForCausalLM.from_pretrained(tiny_llama).save_pretrained(folder, max_shard_size="200KB")
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(folder)
    assert len(list(folder.glob("model-*-of-*.safetensors"))) > 1
    return folder


def break_index(folder: Path, how: str) -> str:
    index = folder / "model.safetensors.index.json"
    record = json.loads(index.read_text())
    shards = sorted(set(record["weight_map"].values()))
    if how == "truncated_index":
        index.write_text(index.read_text()[:40])
    elif how == "no_weight_map":
        index.write_text(json.dumps({"metadata": {}}))
    elif how == "missing_shard":
        (folder / shards[-1]).unlink()
        return shards[-1]
    elif how == "misplaced_tensor":
        tensor = next(name for name, shard in record["weight_map"].items() if shard == shards[0])
        record["weight_map"][tensor] = shards[1]
        index.write_text(json.dumps(record))
        return f"{tensor} in {shards[1]}"
    elif how == "truncated_shard":
        shard = folder / shards[0]
        shard.write_bytes(shard.read_bytes()[:-100])
        return shards[0]
    return ""


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("truncated_index", "{i} is not valid JSON ("),
        ("no_weight_map", "{i} has no weight_map (tensor -> shard file)"),
        ("missing_shard", "{i} names shard {x}, which is missing"),
        ("misplaced_tensor", "{i} places {x}, which does not hold it"),
        ("truncated_shard", "{m}/{x} is truncated ("),
    ],
)
def test_broken_sharded_weights(capsys, run_overrides, sharded_llama, tmp_path, how, problem):
    model = shutil.copytree(sharded_llama, tmp_path / "model")
    named = break_index(model, how)
    line = refused(capsys, [*run_overrides, f"model.path={model}"], tmp_path / "run")
    expected = "error: config key 'model.path': " + problem.format(
        i=model / "model.safetensors.index.json", m=model, x=named
    )
    assert line.startswith(expected) if problem.endswith(("(", ": ")) else line == expected, line


def test_a_whole_sharded_folder_passes(sharded_llama):
    from emoscale.models import model_folder

    model_folder.check(sharded_llama)  # no error: the check refuses only what is broken


# --- 5 (fusion). speech and text model folders through the same validator ---------------------


@pytest.mark.parametrize(
    ("key", "how", "problem"),
    [
        ("model.audio_path", "truncated_weights", "{m}/model.safetensors is truncated ("),
        (
            "model.audio_path",
            "no_weights",
            "{m} has no weights (model.safetensors or pytorch_model.bin)",
        ),
        (
            "model.text_path",
            "corrupt_tokenizer",
            "{m}/tokenizer.json is not valid JSON (line 1 column 29: Expecting value)",
        ),
        (
            "model.text_path",
            "random_weights",
            "{m}/model.safetensors is not a safetensors file (its header length is impossible)",
        ),
        (
            "model.text_path",
            "corrupt_config",
            "{m}/config.json is not valid JSON (line 1 column 24: Expecting property name enclosed in double quotes)",
        ),
    ],
)
def test_broken_fusion_model_folders(
    capsys, fusion_overrides, tiny_wavlm, tiny_roberta, tmp_path, key, how, problem
):
    source = tiny_wavlm if key == "model.audio_path" else tiny_roberta
    model = shutil.copytree(source, tmp_path / "model")
    break_model(model, how)
    line = refused(capsys, [*fusion_overrides, f"{key}={model}"], tmp_path / "run")
    expected = f"error: config key {key!r}: {problem.format(m=model)}"
    assert line.startswith(expected) if problem.endswith("(") else line == expected, line


# --- 1. study parents, eval and report folders; the one delete ---------------------------------


def test_a_sweep_parent_is_never_a_user_or_input_folder(
    capsys, run_overrides, user_folder, corpus_copy
):
    before = {user_folder: digest(user_folder), corpus_copy: digest(corpus_copy)}
    base = [*without_output_dir(run_overrides), f"data.path={corpus_copy}"]
    line = cli_refused(capsys, ["sweep", *base, f"output_dir={user_folder}", "--grid", "seed=1,2"])
    assert line == (
        f"error: output_dir {user_folder} is not an emoscale sweep folder (it holds chapters, "
        "notes.txt); emoscale never writes into a folder holding what it did not write: "
        "choose a new or empty folder"
    )
    line = cli_refused(capsys, ["sweep", *base, f"output_dir={corpus_copy}", "--grid", "seed=1,2"])
    assert line == (
        f"error: output_dir {corpus_copy} is data.path {corpus_copy}; "
        "a run folder must be apart from the folders it reads"
    )
    assert {folder: digest(folder) for folder in before} == before


def test_eval_out_is_never_a_user_input_or_run_folder(capsys, nan_run, user_folder, demo_corpus):
    before = digest(user_folder)
    run = ["eval", str(nan_run)]
    line = cli_refused(capsys, [*run, "--out", str(user_folder)])
    assert line == f"error: --out {user_folder} exists and is not an empty folder"
    line = cli_refused(capsys, [*run, "--out", str(demo_corpus / "eval")])
    assert line == (
        f"error: --out {demo_corpus / 'eval'} is inside data.path {demo_corpus}; "
        "--out must be apart from the folders the run reads"
    )
    line = cli_refused(capsys, [*run, "--out", str(nan_run / "eval")])
    assert line == (
        f"error: --out {nan_run / 'eval'} is inside the run folder {nan_run}; "
        "choose a folder apart from it"
    )
    assert digest(user_folder) == before and not (demo_corpus / "eval").exists()


def test_report_out_replaces_only_an_earlier_report(capsys, nan_run, user_folder):
    (user_folder / "report.md").write_text("# My report\n")
    before = digest(user_folder)
    line = cli_refused(capsys, ["report", str(nan_run), "--out", str(user_folder)])
    assert line == (
        f"error: --out {user_folder} holds a report.md that emoscale did not write; "
        "choose another folder"
    )
    assert digest(user_folder) == before


def test_the_one_delete_refuses_what_emoscale_did_not_write(tmp_path, user_folder):
    from emoscale.errors import EmoscaleError
    from emoscale.training.removal import remove_own

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-00000001").mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    before = digest(user_folder)
    for path in (run_dir, user_folder / "notes.txt", run_dir / "notes.txt", run_dir / ".." / "x"):
        with pytest.raises(EmoscaleError) as caught:
            remove_own(path, run_dir)
        assert str(caught.value) == (
            f"refusing to delete {path}: emoscale deletes only what it wrote in a run folder"
        )
    linked = tmp_path / "linked_run"
    linked.mkdir()
    (linked / "checkpoints").symlink_to(user_folder)  # a `checkpoints` that leads out
    with pytest.raises(EmoscaleError):
        remove_own(linked / "checkpoints" / "chapters", linked)
    remove_own(linked / "checkpoints", linked)  # the link goes, never what it points at
    assert not (linked / "checkpoints").exists() and digest(user_folder) == before
    remove_own(run_dir / "checkpoints" / "step-00000001", run_dir)
    remove_own(run_dir / "metrics.json", run_dir)
    assert sorted(p.name for p in run_dir.rglob("*")) == ["checkpoints"]


# --- 7. more odd inputs, as a hostile user would try them ---------------------------------------


def csv_corpus(folder: Path, demo_corpus: Path, train: str | bytes | None = None, test=None):
    folder.mkdir(parents=True, exist_ok=True)
    for split, content in (("train", train), ("dev", None), ("test", test)):
        target = folder / f"{split}.csv"
        if content is None:
            shutil.copy(demo_corpus / f"{split}.csv", target)
        else:
            target.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def one_class_train(demo_corpus: Path) -> str:
    rows = (demo_corpus / "train.csv").read_text().splitlines()
    return "\n".join([rows[0], *(row for row in rows[1:] if row.endswith(",positive"))]) + "\n"


ODD_CORPORA = {
    "header_only": (lambda d: {"train": HEADER}, "{f}/train.csv: no rows"),
    "empty_file": (lambda d: {"train": ""}, "{f}/train.csv: no rows"),
    "nul_byte": (
        lambda d: {"test": HEADER + "fine\x00 film,positive\n"},
        "{f}/test.csv:2: a NUL byte (0x00); a text file holds none",
    ),
    "one_class_train": (
        lambda d: {"train": one_class_train(d)},
        "data.path {f}: every train example is labelled 'positive'; "
        "a classifier needs at least two classes to learn from",
    ),
}


@pytest.mark.parametrize("case", list(ODD_CORPORA))
def test_odd_corpus_files(capsys, run_overrides, demo_corpus, tmp_path, case):
    files, problem = ODD_CORPORA[case]
    folder = csv_corpus(tmp_path / "corpus", demo_corpus, **files(demo_corpus))
    line = refused(capsys, [*run_overrides, f"data.path={folder}"], tmp_path / "run")
    assert line == "error: " + problem.format(f=folder)


def test_jsonl_with_a_trailing_comma(capsys, run_overrides, demo_corpus, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        lines = (demo_corpus / f"{split}.csv").read_text().splitlines()[1:]
        records = [dict(zip(("text", "label"), line.rsplit(",", 1), strict=True)) for line in lines]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "dev.jsonl").write_text('{"text": "fine film", "label": "positive",}\n')
    line = refused(
        capsys, [*run_overrides, f"data.path={folder}", "data.dataset=jsonl"], tmp_path / "run"
    )
    assert line == (
        f"error: {folder / 'dev.jsonl'}:1: not valid JSON "
        "(Expecting property name enclosed in double quotes)"
    )


def test_odd_paths(capsys, run_overrides, demo_corpus, tiny_llama, tmp_path):
    base = without_output_dir(run_overrides)
    link = tmp_path / "link_to_corpus"
    link.symlink_to(demo_corpus)
    line = refused(capsys, [*base, f"output_dir={link}"])
    assert line == (
        f"error: output_dir {link} is data.path {demo_corpus}; "
        "a run folder must be apart from the folders it reads"
    )
    run = tmp_path / "run"
    for override, expected in (
        (f"data.path={demo_corpus / 'train.csv'}", f"data.path {demo_corpus / 'train.csv'} is not a folder"),
        (f"model.path={tiny_llama / 'config.json'}", f"config key 'model.path': {tiny_llama / 'config.json'} is a file, not a model folder"),
    ):  # fmt: skip
        assert refused(capsys, [*base, f"output_dir={run}", override], run) == f"error: {expected}"
    folder_config = tmp_path / "configs"
    folder_config.mkdir()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    listed = tmp_path / "list.yaml"
    listed.write_text("- train\n- eval\n")
    for path, expected in (
        (folder_config, f"config file {folder_config} is a folder, not a YAML file"),
        (binary, f"config file {binary}: not UTF-8 text (byte 128: invalid start byte)"),
        (listed, f"config file {listed}: expected a mapping of sections, got list"),
    ):
        line = refused(capsys, ["--config", str(path), *base, f"output_dir={run}"], run)
        assert line == f"error: {expected}"


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("eval.batch_size=0", "config key 'eval.batch_size': Input should be greater than or equal to 1 (got 0)"),
        ("train.lr=-1", "config key 'train.lr': Input should be greater than 0 (got -1)"),
        ("prompt.labels=[]", "config key 'prompt.labels': 0 labels; a classifier needs at least two (leave the key out for the corpus' own)"),
        ("data.labels=[]", "config key 'data.labels': 0 labels; a classifier needs at least two (leave the key out for the corpus' own)"),
        ("data.labels=[positive]", "config key 'data.labels': 1 labels; a classifier needs at least two (leave the key out for the corpus' own)"),
        ("data.max_length=0", "config key 'data.max_length': Input should be greater than or equal to 8 (got 0)"),
        ("prompt.template=Rate it:", "config key 'prompt.template': must contain {text} (and may contain {labels})"),
    ],
)  # fmt: skip
def test_odd_values(capsys, run_overrides, tmp_path, override, line):
    assert refused(capsys, [*run_overrides, override], tmp_path / "run") == f"error: {line}"


def test_a_recipe_name_with_a_typo(capsys, run_overrides):
    line = cli_refused(capsys, ["train", "--recipe", "sst2_lroa", *run_overrides])
    assert line == (
        "error: unknown recipe 'sst2_lroa' (did you mean sst2_lora, sst5_lora, sst2_none?); "
        "`emoscale recipes` lists them"
    )


def test_train_refuses_a_nonfinite_score_before_writing_results(
    capsys, nan_run, demo_corpus, tmp_path
):
    corpus = shutil.copytree(demo_corpus, tmp_path / "corpus")
    with open(corpus / "test.csv", "a") as handle:
        handle.write("The ticket cost 20 € and the film was awful.,negative\n")
    from emoscale.tiny import demo

    run_dir = tmp_path / "run"
    nan_model = nan_run.parent / "nan_model"  # the zero-shot model of nan_run
    overrides = demo.overrides(corpus, nan_model) + ["model.method=none", f"output_dir={run_dir}"]
    line = refused(capsys, overrides)
    assert line == (
        "error: test: the model scored example 'test-96' nan (not a finite number); "
        "metrics and predictions are not written"
    )
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "predictions.jsonl").exists()


def test_lora_targets_that_name_no_module_are_refused_before_loading(
    capsys, run_overrides, tiny_llama, tmp_path
):
    # One of two targets wrong: PEFT itself would adapt q_proj and say nothing.
    line = refused(
        capsys, [*run_overrides, "lora.target_modules=[q_proj,qkv_proj]"], tmp_path / "run"
    )
    assert line == (
        f"error: config key 'lora.target_modules': 'qkv_proj' names no module of {tiny_llama} "
        "(its linear layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)"
    )
    assert "trainable parameters" not in capsys.readouterr().out  # before the weights load


def test_a_lora_target_that_is_a_block_is_refused_in_one_line(capsys, run_overrides, tiny_llama):
    line = refused(capsys, [*run_overrides, "lora.target_modules=[mlp]"])
    assert line.startswith(
        f"error: model.method=lora: PEFT cannot adapt {tiny_llama}: Target module LlamaMLP( "
    )


def test_all_linear_targets_every_linear_layer(run_overrides, tmp_path):
    from emoscale.config import load_config

    run_dir, _ = train.run(
        load_config(
            overrides=[*run_overrides, "lora.target_modules=[all-linear]", "train.max_steps=1"]
        )
    )
    adapter = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert sorted({name.rsplit(".", 1)[-1] for name in adapter["target_modules"]}) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"
    ]  # fmt: skip


def test_a_sweep_refuses_train_on_dev(capsys, run_overrides, tmp_path):
    # A sweep picks its best point on dev: with dev trained on, that pick would be meaningless.
    overrides = [*run_overrides, "data.train_on_dev=true", "eval.select=last"]
    overrides = [o for o in overrides if not o.startswith("output_dir=")]
    line = cli_refused(
        capsys, ["sweep", *overrides, f"output_dir={tmp_path / 'sweep'}", "--grid", "lora.r=4,8"]
    )
    assert line == (
        "error: config key 'data.train_on_dev': a sweep picks its best point on dev, which would "
        "then be training data; sweep with dev held out"
    )
    assert not (tmp_path / "sweep").exists()


# --- 8. every corpus in its official layout (round 4: the loaders of data/, one reader each) ---


def _friends(folder: Path) -> Path:
    dialogue = [("Ross", "Hi there.", "joy"), ("Rachel", "Oh no.", "sadness")]
    splits = {split: [dialogue, dialogue] for split in ("train", "dev", "test")}
    return write_friends(folder, splits)


def _mastodon(folder: Path) -> Path:
    train = [f"{i % 2} {'+' if i % 3 else '-'}_I post number {i}" for i in range(24)]
    return write_mastodon(folder, train, ["0 -_Q anxious ?", "1 +_A fine now"])


def _m3ed(folder: Path) -> Path:
    lines = [("_1", "A", "你好", "Happy"), ("_2", "B", "再见", "Sad")]
    series = {
        name: {
            f"{name}_1": ({"A": "朱闪闪", "B": "房似锦"}, [(f"{name}_1{u}", *r) for u, *r in lines])
        }
        for name in ("anjia", "huanle", "doulu")
    }
    return write_m3ed(folder, series, {"train": ["anjia"], "val": ["huanle"], "test": ["doulu"]})


def _iemocap(folder: Path) -> Path:
    codes = ("neu", "hap", "ang", "sad")
    dialogs = {
        f"Ses0{s}F_impro01": [(f"F00{i}", codes[i], f"line {s} {i}") for i in range(4)]
        for s in range(1, 6)
    }
    return write_iemocap(folder, dialogs, wav=False)


def _mosi(folder: Path) -> Path:
    modes = ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    rows = [clip(f"v{i}", 1, f"clip {i}", (-1.5, 2.0)[i % 2], mode) for i, mode in enumerate(modes)]
    return write_label_csv(folder, rows)


def _sst(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (folder / f"stsa.binary.{split}").write_text("1 a fine film .\n0 a dull film .\n")
    return folder


def _edit(path: Path, old: bytes, new: bytes) -> None:
    path.write_bytes(path.read_bytes().replace(old, new, 1))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False))


def _first_m3ed_utterance(data: dict) -> dict:
    return data["anjia"]["anjia_1"]["Dialog"]["anjia_1_1"]


# (dataset, corpus writer, damage, the line); {f} is the corpus folder.
CORPUS_DAMAGE = {
    # not UTF-8, a NUL byte: every loader reads through data/encoding.py
    "sst_latin1": (
        "sst2",
        _sst,
        lambda f: _edit(f / "stsa.binary.train", b"fine", b"caf\xe9"),
        "{f}/stsa.binary.train:1: not UTF-8 (byte 0xe9); save the file as UTF-8",
    ),
    "m3ed_split_list_gbk": (
        "m3ed",
        _m3ed,
        lambda f: (f / "splitInfo/movie_list_val.txt").write_bytes("欢乐\n".encode("gbk")),
        "{f}/splitInfo/movie_list_val.txt:1: not UTF-8 (byte 0xbb); save the file as UTF-8",
    ),
    "mosi_nul": (
        "mosi",
        _mosi,
        lambda f: _edit(f / "label.csv", b"clip 3", b"clip\x003"),
        "{f}/label.csv:5: a NUL byte (0x00); a text file holds none",
    ),
    # an empty split, whatever emptied it (an empty file; every utterance dropped; a tiny train)
    "sst_empty_test": (
        "sst2",
        _sst,
        lambda f: (f / "stsa.binary.test").write_text(""),
        "{f}/stsa.binary.test: the test split holds no examples (sst2: train 2, dev 2, test 0): "
        "its file holds none; every split needs at least one",
    ),
    "meld_header_only_test": (  # named by its CSV, not data.path (round 5)
        "meld",
        lambda f: write_meld(
            f,
            {
                "train": [("Hi.", "Ross", "joy", "positive", 0, 0)],
                "dev": [("No.", "Mon", "sadness", "negative", 0, 0)],
                "test": [],
            },
        ),
        lambda f: None,
        "{f}/test_sent_emo.csv: the test split holds no examples (meld: train 1, dev 1, test 0): "
        "its file holds none; every split needs at least one",
    ),
    "friends_test_all_non_neutral": (
        "friends",
        _friends,
        lambda f: _edit_json(
            f / "friends_test.json",
            lambda d: [u.update(emotion="non-neutral") for dia in d for u in dia],
        ),
        "{f}/friends_test.json: the test split holds no examples (friends: train 4, dev 4, "
        "test 0): all 4 of its examples were dropped (non-neutral (no majority emotion): 4); "
        "every split needs at least one",
    ),
    "mastodon_one_dialogue_train": (  # its one dialogue becomes dev: the run used to hang
        "mastodon",
        _mastodon,
        lambda f: (f / "datatrainJoint.txt").write_text("0 +_I good\n1 -_I bad\n"),
        "data.path {f}: the train split holds no examples (mastodon: train 0, dev 2, test 2): "
        "none left when the corpus was split; every split needs at least one",
    ),
    # JSON corpora: a field that is not a string, a key written twice
    "friends_utterance_null": (
        "friends",
        _friends,
        lambda f: _edit_json(f / "friends_dev.json", lambda d: d[0][1].update(utterance=None)),
        "{f}/friends_dev.json: dialogue 0, utterance 1: utterance is null, expected a string",
    ),
    "friends_repeated_key": (
        "friends",
        _friends,
        lambda f: _edit(
            f / "friends_train.json", b'"emotion": "', b'"emotion": "joy", "emotion": "'
        ),
        "{f}/friends_train.json: key 'emotion' appears twice in one object",
    ),
    "m3ed_text_null": (
        "m3ed",
        _m3ed,
        lambda f: _edit_json(
            f / "annotation.json", lambda d: _first_m3ed_utterance(d).update(Text=None)
        ),
        "{f}/annotation.json: utterance anjia_1_1: Text is null, expected a string",
    ),
    "m3ed_emotion_list": (
        "m3ed",
        _m3ed,
        lambda f: _edit_json(
            f / "annotation.json",
            lambda d: _first_m3ed_utterance(d)["EmoAnnotation"].update(final_main_emo=["Happy"]),
        ),
        '{f}/annotation.json: utterance anjia_1_1: final_main_emo is ["Happy"], expected a string',
    ),
    "m3ed_speaker_info_string": (
        "m3ed",
        _m3ed,
        lambda f: _edit_json(
            f / "annotation.json", lambda d: d["anjia"]["anjia_1"].update(SpeakerInfo={"A": "x"})
        ),
        "{f}/annotation.json: dialogue anjia_1: expected SpeakerInfo {{'A': {{'Name': ...}}, ...}}",
    ),
    # MELD and MMSA rows read as strictly as data.dataset=csv
    "mosi_extra_field": (
        "mosi",
        _mosi,
        lambda f: _edit(f / "label.csv", b",train\r\n", b",train,oops\r\n"),
        "{f}/label.csv:2: 10 fields, the header has 9 (quote a text that holds a comma)",
    ),
    "meld_repeated_column": (
        "meld",
        lambda f: write_meld(
            f,
            {
                s: [
                    ("Hi.", "Ross", "joy", "positive", 0, 0),
                    ("No.", "Mon", "sadness", "negative", 0, 1),
                ]
                for s in ("train", "dev", "test")
            },
        ),
        lambda f: _edit(f / "dev_sent_emo.csv", b"Season", b"Emotion"),
        "{f}/dev_sent_emo.csv:1: column 'Emotion' appears twice",
    ),
    # IEMOCAP: an utterance labelled twice, a start time that is not a number
    "iemocap_utterance_twice": (
        "iemocap",
        _iemocap,
        lambda f: shutil.copy(
            f / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt",
            f / "Session2/dialog/EmoEvaluation/Ses02F_impro01_copy.txt",
        ),
        "{f} (utterance names in dialog/EmoEvaluation): duplicate example id 'Ses02F_impro01_F000'",
    ),
    "iemocap_start_time": (
        "iemocap",
        _iemocap,
        lambda f: _edit(
            f / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt", b"[6.2901", b"[6.29.01"
        ),
        "{f}/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt:3: start time '6.29.01' is not a number",
    ),
    # a folder where the release has a file
    "m3ed_split_file_is_a_folder": (
        "m3ed",
        _m3ed,
        lambda f: (
            (f / "splitInfo/movie_list_test.txt").unlink(),
            (f / "splitInfo/movie_list_test.txt").mkdir(),
        ),
        "{f}/splitInfo/movie_list_test.txt: a folder, expected M3ED's file splitInfo/movie_list_test.txt",
    ),
}


@pytest.mark.parametrize("case", list(CORPUS_DAMAGE))
def test_damaged_corpus_in_its_official_layout(capsys, run_overrides, tmp_path, case):
    dataset, write, damage, problem = CORPUS_DAMAGE[case]
    folder = write(tmp_path / "corpus")
    damage(folder)
    overrides = [o for o in run_overrides if not o.startswith(("data.", "output_dir="))]
    line = refused(
        capsys,
        [
            *overrides,
            f"data.dataset={dataset}",
            f"data.path={folder}",
            f"output_dir={tmp_path / 'run'}",
        ],
        tmp_path / "run",
    )
    assert line == "error: " + problem.format(f=folder)


def test_an_empty_split_names_what_emptied_that_split(tmp_path):
    """MOSI's splits share label.csv: the test split emptied by its own drops (2class_nonzero has
    no class for a score of 0) says so, with that split's count, not the corpus' total."""
    modes = ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    scores = [-1.5, 2.0, 0.0, 2.0, -1.5, 2.0, 0.0, 0.0]  # one train clip scored 0 too
    rows = [
        clip(f"v{i}", 1, f"clip {i}", score, mode)
        for i, (score, mode) in enumerate(zip(scores, modes, strict=True))
    ]
    folder = write_label_csv(tmp_path / "mosi", rows)
    with pytest.raises(DataError) as refused_split:
        load_corpus(data_config("mosi", folder, target="2class_nonzero"))
    assert str(refused_split.value) == (
        f"data.path {folder}: the test split holds no examples (mosi: train 3, dev 2, test 0): "
        "all 2 of its examples were dropped (score 0 (2class_nonzero has no neutral): 2); "
        "every split needs at least one"
    )


def test_too_few_dialogues_for_the_folds_says_so(tmp_path):
    """A one-dialogue Mastodon train split re-split into 2 folds would leave one fold's dev split
    empty: refused for every fold, before any split is made."""
    folder = write_mastodon(tmp_path / "m", ["0 +_I good", "1 -_I bad"], ["0 +_I ok", "1 -_I no"])
    for fold in (0, 1):
        with pytest.raises(DataError) as refused:
            load_corpus(data_config("mastodon", folder, fold=fold, num_folds=2))
        assert str(refused.value) == (
            f"data.path {folder}: 2 dialogue folds (data.num_folds) need at least 2 dialogues in "
            "train and dev; the corpus has 1"
        )


@pytest.mark.parametrize("dataset", ["sst2", "friends", "mastodon", "m3ed"])
def test_a_byte_order_mark_is_accepted_by_every_loader(tmp_path, dataset):
    write, name = {
        "sst2": (_sst, "stsa.binary.dev"),
        "friends": (_friends, "friends_dev.json"),
        "mastodon": (_mastodon, "datatestJoint.txt"),
        "m3ed": (_m3ed, "annotation.json"),
    }[dataset]
    folder = write(tmp_path / "corpus")
    plain = load_corpus(data_config(dataset, folder)).splits
    (folder / name).write_bytes(b"\xef\xbb\xbf" + (folder / name).read_bytes())
    assert load_corpus(data_config(dataset, folder)).splits == plain


# --- 9. model folders that transformers would load only part-way (round 4) ---------------------


def _set_config(folder: Path, **values) -> None:
    _edit_json(folder / "config.json", lambda config: config.update(values))


def _add_tokens(folder: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.add_tokens(["filmic", "moviegoer", "plotline", "boringness", "greatness"])
    tokenizer.save(str(folder / "tokenizer.json"))


MODEL_DAMAGE = {
    "tokenizer_json_not_a_tokenizer": (
        lambda m: (m / "tokenizer.json").write_text("{}"),
        "config key 'model.path': transformers cannot load the tokenizer of {m} "
        "(KeyError: 'added_tokens')",
    ),
    "tokenizer_config_a_list": (
        lambda m: (m / "tokenizer_config.json").write_text("[1, 2]"),
        "config key 'model.path': {m}/tokenizer_config.json is not a JSON object",
    ),
    "special_tokens_map_not_json": (
        lambda m: (m / "special_tokens_map.json").write_text("["),
        "config key 'model.path': {m}/special_tokens_map.json is not valid JSON "
        "(line 1 column 2: Expecting value)",
    ),
    "tokenizer_larger_than_embeddings": (
        _add_tokens,
        "config key 'model.path': the tokenizer of {m} produces token ids up to {top} "
        "('greatness') but the model's embeddings hold {v} (config.json vocab_size): use the "
        "model's own tokenizer",
    ),
    "pytorch_model_bin_not_torch": (
        lambda m: (
            (m / "model.safetensors").unlink(),
            (m / "pytorch_model.bin").write_bytes(b"not a pickle"),
        ),
        "config key 'model.path': {m}/pytorch_model.bin is truncated or not a PyTorch weights "
        "file (neither a zip archive nor a pickle)",
    ),
    "config_values_transformers_refuses": (
        lambda m: _set_config(m, num_attention_heads=0),
        "config key 'model.path': transformers cannot read {m}/config.json "
        "(ZeroDivisionError: integer modulo by zero)",
    ),
}


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_damaged_model_folder_is_one_line_before_loading(
    capsys, run_overrides, tiny_llama, tmp_path, case
):
    damage, problem = MODEL_DAMAGE[case]
    folder = shutil.copytree(tiny_llama, tmp_path / "model")
    damage(folder)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    top = vocab + 4  # _add_tokens adds five words the tokenizer did not have
    line = refused(
        capsys,
        [
            *without_output_dir(run_overrides),
            f"model.path={folder}",
            f"output_dir={tmp_path / 'run'}",
        ],
        tmp_path / "run",
    )
    assert line == "error: " + problem.format(m=folder, top=top, v=vocab)


def test_model_folder_parts_transformers_never_reads_are_accepted(tiny_llama, tmp_path):
    """A Git LFS pointer where pytorch_model.bin would be, beside model.safetensors (a clone that
    pulled only *.safetensors), and an added special token past the embeddings that no prompt
    uses (as Gemma 3's tokenizer ships): transformers loads both folders, so emoscale does too."""
    from transformers import AutoConfig, AutoTokenizer

    from emoscale.models import model_folder

    folder = shutil.copytree(tiny_llama, tmp_path / "model")
    (folder / "pytorch_model.bin").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image_soft_token>"]})
    tokenizer.save_pretrained(folder)
    vocab = AutoConfig.from_pretrained(folder).vocab_size
    reloaded = AutoTokenizer.from_pretrained(folder)
    assert reloaded.convert_tokens_to_ids("<image_soft_token>") >= vocab
    model_folder.check(folder)
    model_folder.check_vocabulary(folder, reloaded, AutoConfig.from_pretrained(folder))


# --- 10. a finished run's own files, damaged, as eval/predict/report read them (round 4) -------


@pytest.fixture(scope="module")
def lora_run(run_overrides_module):
    run_dir = run_overrides_module[1] / "lora_run"
    overrides = [*run_overrides_module[0], f"output_dir={run_dir}", "train.max_steps=1"]
    assert train.main(overrides) == 0
    return run_dir


@pytest.fixture(scope="module")
def run_overrides_module(tiny_llama, demo_corpus, tmp_path_factory):
    from emoscale.tiny import demo

    return demo.overrides(demo_corpus, tiny_llama), tmp_path_factory.mktemp("round4")


RUN_DAMAGE = {
    "adapter_truncated": (
        lambda r: _truncate(r / "model/adapter_model.safetensors"),
        "{r}/model/adapter_model.safetensors is truncated ({cut} bytes; its header names {size})",
    ),
    "adapter_config_not_json": (
        lambda r: (r / "model/adapter_config.json").write_text("{"),
        "{r}/model/adapter_config.json:1: not valid JSON "
        "(Expecting property name enclosed in double quotes)",
    ),
    "metrics_nan": (
        lambda r: (r / "metrics.json").write_text('{"test": {"accuracy": NaN}}'),
        "{r}/metrics.json: key 'test.accuracy' is NaN (not a finite number)",
    ),
    "metrics_past_a_float": (  # Python's json reads 1e400 as inf
        lambda r: (r / "metrics.json").write_text('{"test": {"accuracy": 1e400}}'),
        "{r}/metrics.json: key 'test.accuracy' is 1e400 (not a finite number)",
    ),
    "run_json_repeated_key": (
        lambda r: (r / "run.json").write_text('{"base_model": {}, "base_model": {}}'),
        "{r}/run.json: key 'base_model' appears twice in one object",
    ),
}


def _truncate(path: Path) -> None:
    RUN_DAMAGE_SIZES[path.name] = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])  # the header whole, the last tensor cut


RUN_DAMAGE_SIZES: dict[str, int] = {}


@pytest.mark.parametrize("command", ["predict", "eval", "export"])
@pytest.mark.parametrize("case", list(RUN_DAMAGE))
def test_a_damaged_run_folder_is_one_line(capsys, lora_run, tmp_path, case, command):
    damage, problem = RUN_DAMAGE[case]
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    damage(run_dir)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("A fine film.\n")
    argv = [command, str(run_dir)] + {
        "predict": ["--input", str(inputs)],
        "eval": [],
        "export": ["--out", str(tmp_path / "merged")],
    }[command]
    line = cli_refused(capsys, argv)
    assert not (tmp_path / "merged").exists()
    size = RUN_DAMAGE_SIZES.get("adapter_model.safetensors", 100)
    assert line == "error: " + problem.format(r=run_dir, size=size, cut=size - 100)


def test_report_refuses_a_damaged_metrics_file(capsys, lora_run, tmp_path):
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    (run_dir / "metrics.json").write_text("{")
    line = cli_refused(capsys, ["report", str(run_dir), "--out", str(tmp_path / "report")])
    assert line == (
        f"error: {run_dir}/metrics.json:1: not valid JSON "
        "(Expecting property name enclosed in double quotes)"
    )


def test_report_out_never_replaces_a_users_report_csv(capsys, nan_run, user_folder):
    (user_folder / "report.csv").write_text("my own table\n")
    before = digest(user_folder)
    line = cli_refused(capsys, ["report", str(nan_run), "--out", str(user_folder)])
    assert line == (
        f"error: --out {user_folder} holds report.csv but no emoscale report.md; emoscale never "
        "replaces what it did not write: choose another folder"
    )
    assert digest(user_folder) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b"A fine film.\n" * 3 + b"caf\xe9 film\n",
            "4: not UTF-8 (byte 0xe9); save the file as UTF-8",
        ),
        (b"A fine film.\nfi\x00lm\n", "2: a NUL byte (0x00); a text file holds none"),
    ],
    ids=["latin1", "nul"],
)
def test_streamed_predict_checks_the_whole_input_first(capsys, nan_run, tmp_path, content, problem):
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(content)
    output = tmp_path / "labels.jsonl"
    line = cli_refused(
        capsys, ["predict", str(nan_run), "--input", str(inputs), "--output", str(output)]
    )
    assert line == f"error: {inputs}:{problem}"
    assert not output.exists() and not output.with_name(output.name + ".parts").exists()


# --- 11. usage mistakes on every entry point (round 4) -----------------------------------------


def test_the_training_entry_point_prints_one_line_for_a_usage_mistake(capsys):
    with pytest.raises(SystemExit) as exit:
        train.main(["--bogus"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == "error: emoscale train: unrecognized arguments: --bogus (see emoscale train --help)\n"
    )


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["train", "--resum"], "emoscale train"),
        (["cv", "--overw"], "emoscale cv"),
        (["predict", "R", "--inp"], "emoscale predict"),
    ],
)
def test_an_abbreviated_option_is_not_taken_for_a_longer_one(capsys, argv, prog):
    """`--resum` must not silently mean --resume (argparse's default allows prefixes)."""
    flag = next(item for item in argv if item.startswith("--"))
    assert cli_refused(capsys, argv) == (
        f"error: {prog}: unrecognized arguments: {flag} (see {prog} --help)"
    )


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--layers", "0", "a whole number of at least 1, got '0'"),
        ("--hidden-size", "-64", "a whole number of at least 1, got '-64'"),
        ("--init-range", "nan", "a number above 0 and at most 1, got 'nan'"),
        (
            "--hidden-size",
            "3",
            "a multiple of 8 (4 attention heads) up to 4096 for a tiny model, got '3'",
        ),
        (
            "--hidden-size",
            "1000000000",
            "a multiple of 8 (4 attention heads) up to 4096 for a tiny model, got '1000000000'",
        ),
        ("--layers", "100000000", "at most 48 for a tiny model, got '100000000'"),
    ],
)
def test_make_tiny_numbers_are_checked(capsys, tmp_path, flag, value, expected):
    text = tmp_path / "text.txt"
    text.write_text("a fine film\n")
    line = cli_refused(
        capsys, ["make-tiny", "--text", str(text), "--out", str(tmp_path / "m"), f"{flag}={value}"]
    )
    assert line == (
        f"error: emoscale make-tiny: argument {flag}: expected {expected} "
        "(see emoscale make-tiny --help)"
    )
    assert not (tmp_path / "m").exists()


# --- 12. round 5: outputs, studies, configs, model roles (held-out probing) ------------------------


@pytest.mark.parametrize(
    "how", ["link to an empty folder", "broken link", "below a file", "below a broken link"]
)
def test_a_new_model_folder_is_never_a_link_or_below_a_file(capsys, tmp_path, how):
    """make-tiny, convert and export rename a finished folder into --out: a link was replaced, not
    filled, and a path below a file failed after the work, with a traceback."""
    text = tmp_path / "text.txt"
    text.write_text("a fine film\n")
    target = tmp_path / "target"
    out = tmp_path / "out"
    if how == "link to an empty folder":
        target.mkdir()
        out.symlink_to(target)
        problem = f"is a symbolic link (to {target}); give the folder's own path"
    elif how == "broken link":
        out.symlink_to(target)
        problem = f"is a symbolic link (to {target}); give the folder's own path"
    elif how == "below a broken link":  # mkdir of its parents failed with a traceback
        (tmp_path / "out").symlink_to(target)
        out = tmp_path / "out" / "model"
        problem = f"is inside {tmp_path / 'out'}, a symbolic link to a missing {target}"
    else:
        out = text / "model"
        problem = f"is inside {text}, which is a file, not a folder"
    line = cli_refused(capsys, ["make-tiny", "--text", str(text), "--out", str(out)])
    assert line == f"error: make-tiny: --out {out} {problem}"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        {"text.txt", "out", "target"} & {p.name for p in tmp_path.iterdir()}
    )  # no temporary folder left beside it


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"caf\xe9 noir\n", "1: not UTF-8 (byte 0xe9); save the file as UTF-8"),
     (b"good\nba\x00d\n", "2: a NUL byte (0x00); a text file holds none")],
    ids=["latin-1", "nul"],
)  # fmt: skip
def test_make_tiny_text_is_strict_utf8(capsys, tmp_path, content, problem):
    text = tmp_path / "text.txt"
    text.write_bytes(content)
    line = cli_refused(capsys, ["make-tiny", "--text", str(text), "--out", str(tmp_path / "m")])
    assert line == f"error: {text}:{problem}"
    assert not (tmp_path / "m").exists()


def test_export_and_predict_write_apart_from_the_run_and_its_base(capsys, lora_run, tiny_llama):
    """eval --out's rule for every command that writes from a finished run: a merged model or a
    predictions file inside the run folder or inside the base model's folder is refused."""
    before = digest(tiny_llama)
    merged = lora_run / "merged"
    assert cli_refused(capsys, ["export", str(lora_run), "--out", str(merged)]) == (
        f"error: export: --out {merged} is inside the run folder {lora_run}; choose a folder "
        "apart from it"
    )
    into_base = tiny_llama / "merged"
    assert cli_refused(capsys, ["export", str(lora_run), "--out", str(into_base)]) == (
        f"error: export: --out {into_base} is inside model.path {tiny_llama}; "
        "--out must be apart from the folders the run reads"
    )
    inputs = lora_run.parent / "inputs.txt"
    inputs.write_text("a fine film\n")
    output = tiny_llama / "labels.jsonl"
    argv = ["predict", str(lora_run), "--input", str(inputs), "--output"]
    assert cli_refused(capsys, [*argv, str(output)]) == (
        f"error: --output {output} is inside model.path {tiny_llama}; "
        "--output must be apart from the folders the run reads"
    )
    assert cli_refused(capsys, [*argv, "/"]) == (
        "error: --output / is a folder; give a file to write, e.g. /predictions.jsonl"
    )
    below = inputs / "labels.jsonl"
    assert cli_refused(capsys, [*argv, str(below)]) == (
        f"error: --output {below} is inside {inputs}, which is a file, not a folder"
    )
    assert digest(tiny_llama) == before
    assert not merged.exists() and not (lora_run / "labels.jsonl.parts").exists()


def test_predict_parts_folder_with_a_foreign_job_json(capsys, lora_run, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a fine film\n")
    output = tmp_path / "labels.jsonl"
    parts = tmp_path / "labels.jsonl.parts"
    parts.mkdir()
    (parts / "job.json").write_text("my own notes, not JSON")
    argv = ["predict", str(lora_run), "--input", str(inputs), "--output", str(output)]
    assert cli_refused(capsys, argv) == (
        f"error: {parts} holds a job.json that emoscale did not write; remove it or choose "
        "another --output"
    )
    assert (parts / "job.json").read_text() == "my own notes, not JSON"


@pytest.mark.parametrize("where", ["corpus", "text model", "file"])
def test_the_text_feature_cache_is_apart_from_the_inputs(
    capsys, fusion_overrides, tone_corpus, tiny_roberta, tmp_path, where
):
    cache = {"corpus": tone_corpus, "text model": tiny_roberta, "file": tmp_path / "notes.txt"}[
        where
    ]
    if where == "file":
        cache.write_text("mine")
    before = digest(tone_corpus), digest(tiny_roberta)
    line = refused(capsys, [*fusion_overrides, f"fusion.text_cache_dir={cache}"])
    problem = {
        "corpus": f"is data.path {tone_corpus}; the cache must be apart from the folders the run reads",
        "text model": f"is model.text_path {tiny_roberta}; the cache must be apart from the "
        "folders the run reads",
        "file": "is a file, not a folder",
    }[where]
    assert line == f"error: config key 'fusion.text_cache_dir': {cache} {problem}"
    assert (digest(tone_corpus), digest(tiny_roberta)) == before


def test_a_text_feature_cache_may_hold_the_corpus(fusion_overrides, tone_corpus, tmp_path):
    """The cache writes only into root/<hash>/: a project folder holding the corpus is fine."""
    from emoscale.config import load_config
    from emoscale.models.text_features import check_cache_root

    project = tone_corpus.parent
    config = load_config(overrides=[*fusion_overrides, f"fusion.text_cache_dir={project}"])
    check_cache_root(config)  # no error


@pytest.mark.parametrize(
    ("grid", "problem"),
    [
        (["seed=1,1"], "point 'seed=1' comes twice; give each value once"),
        (["train.lr=1e-3,0.001"],
         "points 'train.lr=1e-3' and 'train.lr=0.001' are the same config; give each value once"),
        (["prompt.template=a/b {text},a?b {text}"],
         "points 'prompt.template=a-b--text-' and 'prompt.template=a-b--text-' would share the run "
         "folder {parent}/prompt.template=a-b--text-; give values that differ in letters or digits"),
    ],
    ids=["same-value", "same-number", "same-folder-name"],
)  # fmt: skip
def test_every_sweep_point_is_its_own_run(capsys, run_overrides, tmp_path, grid, problem):
    """A repeated point trained once and counted twice in mean ± std (or kept the first point's
    run for the second, different one)."""
    parent = tmp_path / "sweep"
    argv = ["sweep", *without_output_dir(run_overrides), f"output_dir={parent}", "--grid", *grid]
    assert cli_refused(capsys, argv) == f"error: --grid: {problem.format(parent=parent)}"
    assert not parent.exists()


@pytest.fixture
def speaker_corpus(demo_corpus, tmp_path):
    """The demo corpus with a speaker column (6 speakers): cv folds of whole speakers."""
    folder = tmp_path / "speakers"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        rows = (demo_corpus / f"{split}.csv").read_text().splitlines()
        lines = [rows[0] + ",speaker"] + [f"{row},s{n % 6}" for n, row in enumerate(rows[1:])]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--folds", "0,0"], "--folds '0,0': fold 0 given twice"),
        (["data.fold=1"], "override 'data.fold=1': cv sets data.fold for each fold; choose folds "
         "with --folds 1"),
        (["data.num_folds=100000"],
         "100000 speaker folds need at least 100000 speakers; the corpus has 6"),
    ],
    ids=["fold-twice", "data.fold", "more-folds-than-speakers"],
)  # fmt: skip
def test_cv_folds_that_would_repeat_or_be_replaced(
    capsys, run_overrides, speaker_corpus, tmp_path, extra, problem
):
    """data.num_folds=100000 built 100000 configs (minutes) before the first fold failed."""
    parent = tmp_path / "cv"
    overrides = [o for o in without_output_dir(run_overrides) if not o.startswith("data.path=")]
    argv = ["cv", *overrides, f"data.path={speaker_corpus}", f"output_dir={parent}", *extra]
    assert cli_refused(capsys, argv) == f"error: {problem}"
    assert not parent.exists()


def test_a_kept_study_point_must_have_the_studys_config(capsys, run_overrides, tmp_path):
    """A config file edited between two starts of a sweep (the same path: the same study) kept
    the finished points of the old config beside new ones in one mean ± std."""
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  lr: 0.001\n")
    parent = tmp_path / "sweep"
    overrides = [o for o in without_output_dir(run_overrides) if not o.startswith("train.lr=")] + [
        f"output_dir={parent}",
        "train.max_steps=1",
    ]
    from emoscale import cli

    assert cli.main(["sweep", "--config", str(config), *overrides, "--grid", "seed=1"]) == 0
    capsys.readouterr()
    config.write_text("train:\n  lr: 0.005\n")
    kept = digest(parent)
    argv = ["sweep", "--config", str(config), *overrides, "--grid", "seed=1,2"]
    assert cli_refused(capsys, argv) == (
        f"error: point 'seed=1' finished earlier in {parent / 'seed=1'} with config key "
        "'train.lr' 0.001; the study now gives 0.005. Pass --overwrite to redo every point, or "
        "choose a new output_dir"
    )
    assert digest(parent) == kept


def test_a_section_given_as_a_mapping_keeps_its_other_keys(tmp_path):
    """`train={lr: 0.5}` replaced the whole train section: train.max_steps=1 before it was lost
    and the run trained 90 steps. It now sets train.lr, as a config file's section would; an
    empty YAML section (`train:`) is an empty section."""
    from emoscale.config import load_config

    config = load_config(overrides=["train.max_steps=1", "train={lr: 0.5}"])
    assert (config.train.max_steps, config.train.lr) == (1, 0.5)
    empty = tmp_path / "run.yaml"
    empty.write_text("train:\neval:\n")
    config = load_config(empty, ["train.lr=0.1"])
    assert (config.train.lr, config.eval.batch_size) == (0.1, 32)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [(["train", "--config", ""], "config file '': an empty path; give a YAML file"),
     (["train", "--recipe", ""], "unknown recipe ''; `emoscale recipes` lists them"),
     (["estimate", "--config", ""], "config file '': an empty path; give a YAML file")],
    ids=["config", "recipe", "estimate"],
)  # fmt: skip
def test_an_empty_config_path_is_not_the_demo(capsys, argv, problem):
    """`--config ""` (an unset shell variable) ran the built-in demo for a minute."""
    assert cli_refused(capsys, argv) == f"error: {problem}"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "DeepSpeed config {ds} (deepspeed_config_file) does not exist"),
        ("{not json", "DeepSpeed config {ds}:1: not valid JSON (Expecting property name enclosed "
         "in double quotes)"),
        ("[1, 2]", "DeepSpeed config {ds}: expected a JSON object, got list"),
        ('{"zero_optimization": {"stage": 7}}',
         "DeepSpeed config {ds}: zero_optimization.stage is 7; DeepSpeed's ZeRO stages are 0, 1, 2 "
         "and 3"),
        ('{"gradient_accumulation_steps": "four"}',
         "DeepSpeed config {ds}: gradient_accumulation_steps is 'four'; expected a whole number of "
         "at least 1, or \"auto\" (the run config's)"),
        ('{"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 8}',
         "config key 'train.batch_size': is 16 but the DeepSpeed config sets "
         "train_micro_batch_size_per_gpu 8; set it in the run config only (\"auto\" in the "
         "DeepSpeed config)"),
    ],
    ids=["missing", "not-json", "list", "stage-7", "count-text", "micro-batch"],
)  # fmt: skip
def test_a_deepspeed_config_file_is_read_strictly(
    capsys, run_overrides, tmp_path, monkeypatch, content, problem
):
    """The JSON `accelerate launch` hands over: Accelerate or DeepSpeed failed on it with a
    traceback, or (a micro-batch size of its own) silently won over train.batch_size."""
    ds = tmp_path / "ds.json"
    if content is not None:
        ds.write_text(content)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(ds))
    assert refused(capsys, run_overrides, tmp_path / "run") == f"error: {problem.format(ds=ds)}"


def test_model_folders_in_the_wrong_role(capsys, run_overrides, tiny_roberta, tiny_wavlm, tmp_path):
    """A sentence encoder as model.path loaded with a random LM head and trained; estimate failed
    with a traceback. A GGUF file names the command that converts it."""
    base = [o for o in run_overrides if not o.startswith(("model.path=", "lora.target_modules="))]
    for folder, kind in ((tiny_roberta, "RobertaModel"), (tiny_wavlm, "WavLMModel")):
        line = refused(capsys, [*base, f"model.path={folder}", "lora.target_modules=[all-linear]"])
        assert line == (
            f"error: config key 'model.path': {folder} holds a {kind}, not a causal LM "
            "(config.json's architectures name no ...ForCausalLM class); the prompt classifier "
            "needs a model that generates text"
        )
    assert cli_refused(capsys, ["estimate", f"model.path={tiny_roberta}"]).startswith(
        f"error: config key 'model.path': {tiny_roberta} holds a RobertaModel, not a causal LM"
    )
    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    assert refused(capsys, [*base, f"model.path={gguf}"]) == (
        f"error: config key 'model.path': {gguf} is a file, not a model folder; convert it "
        f"first: emoscale convert gguf {gguf} --out DIR"
    )


def test_a_tokenizer_without_eos(capsys, run_overrides, tiny_llama, tmp_path):
    model = shutil.copytree(tiny_llama, tmp_path / "no_eos")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (model / name).is_file():
            values = json.loads((model / name).read_text())
            values.pop("eos_token", None)
            (model / name).write_text(json.dumps(values))
    base = [o for o in run_overrides if not o.startswith("model.path=")]
    assert refused(capsys, [*base, f"model.path={model}"], tmp_path / "run") == (
        f"error: config key 'model.path': the tokenizer of {model} has no EOS token "
        "(eos_token in tokenizer_config.json); a causal LM's answer ends with one"
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [("{{ raise_exception('no system role') }}", "TemplateError: no system role"),
     ("{{ foo.bar }}", "UndefinedError: 'foo' is undefined"),
     ("{{ messages[0]['content'] }", "TemplateSyntaxError: unexpected '}'")],
    ids=["raises", "undefined", "syntax"],
)  # fmt: skip
def test_a_chat_template_that_fails(capsys, run_overrides, tmp_path, template, problem):
    line = refused(capsys, [*run_overrides, f"prompt.chat_template={template}"], tmp_path / "run")
    assert line == (
        "error: config key 'prompt.chat_template': the template fails on a user message "
        f"({problem})"
    )


def test_a_size_key_too_large_for_memory(capsys, run_overrides, tmp_path):
    line = refused(capsys, [*run_overrides, "lora.r=1000000000000"], tmp_path / "run")
    assert line.startswith("error: building the lora model ran out of memory (")
    assert line.endswith(
        " GB at once); check the size keys (lora.r, ptuning.num_virtual_tokens, fusion.dim, ...) "
        "and model.dtype"
    )


def test_metrics_that_are_not_numbers(capsys, lora_run, tmp_path):
    """metrics.json edited by hand: report (and cv/sweep summaries) failed inside mean ± std."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["test"]["accuracy"] = "high"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert cli_refused(capsys, ["report", str(run_dir), "--out", str(tmp_path / "r")]) == (
        f"error: {run_dir / 'metrics.json'}: test.accuracy is 'high', expected a number"
    )
    (run_dir / "metrics.json").write_text('{"dev": {"accuracy": 1e400}, "test": {}}')
    assert cli_refused(capsys, ["report", str(run_dir), "--out", str(tmp_path / "r")]) == (
        f"error: {run_dir / 'metrics.json'}: key 'dev.accuracy' is 1e400 (not a finite number)"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [("data:\n  labels: !!set {negative: null, positive: null}\n", "2:11: the tag !!set"),
     ("prompt:\n  template: !!binary e3RleHR9\n", "2:13: the tag !!binary")],
    ids=["set", "binary"],
)  # fmt: skip
def test_yaml_tags_without_order_or_text(capsys, run_overrides, tmp_path, yaml_text, problem):
    """A `!!set` of labels has no order: label ids changed with the process's hash seed."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    line = refused(capsys, ["--config", str(config), *run_overrides], tmp_path / "run")
    assert line == (
        f"error: config file {config}:{problem} has no place in a config (write a list or plain text)"
    )


@pytest.mark.parametrize(
    "key", ["train.batch_size", "lora.r", "train.lr", "seed", "fusion.classifier_layers"]
)
def test_true_or_false_is_not_a_number(capsys, run_overrides, tmp_path, key):
    """pydantic's lax mode read `batch_size: true` as 1 and trained with it."""
    line = refused(capsys, [*run_overrides, f"{key}=true"], tmp_path / "run")
    assert (
        line == f"error: config key {key!r}: Input should be a number, not true or false (got True)"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{broken", "{record}:1: not valid JSON (Expecting property name enclosed in double quotes); "
      "remove the folder's study.json or choose a new output_dir"),
     ("[1]", "{record}: not a study record emoscale wrote (expected an object with kind, config, "
      "overrides and points); remove it or choose a new output_dir")],
    ids=["not-json", "list"],
)  # fmt: skip
def test_a_study_record_written_by_hand(capsys, run_overrides, tmp_path, content, problem):
    """study.json that does not parse failed with a traceback on every rerun and --status."""
    parent = tmp_path / "sweep"
    parent.mkdir()
    record = parent / "study.json"
    record.write_text(content)
    expected = f"error: {problem.format(record=record)}"
    assert cli_refused(capsys, ["sweep", "--status", str(parent)]) == expected
    argv = ["sweep", *without_output_dir(run_overrides), f"output_dir={parent}", "--grid", "seed=1"]
    assert cli_refused(capsys, argv) == expected
    assert record.read_text() == content


def test_a_finished_runs_records_edited_by_hand(capsys, lora_run, tmp_path):
    """An adapter_config.json whose rank is not the saved tensors' (PEFT's size-mismatch
    traceback after the base loaded); run.json or progress.json damaged before --resume."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    adapter_config = run_dir / "model" / "adapter_config.json"
    values = json.loads(adapter_config.read_text())
    values["r"] = 4096
    adapter_config.write_text(json.dumps(values))
    line = cli_refused(capsys, ["export", str(run_dir), "--out", str(tmp_path / "merged")])
    assert line.startswith(f"error: {adapter_config}: r is 4096 but adapter_model.safetensors ")
    assert line.endswith(" of rank 8; the adapter config does not belong to these weights")
    assert not (tmp_path / "merged").exists()

    resume = ["--config", str(lora_run / "config.yaml"), f"output_dir={run_dir}", "--resume"]
    (run_dir / "run.json").write_text("{oops")
    kept = digest(run_dir)
    assert refused(capsys, resume) == (
        f"error: {run_dir / 'run.json'}:1: not valid JSON (Expecting property name enclosed in "
        "double quotes)"
    )
    assert digest(run_dir) == kept
    shutil.copy(lora_run / "run.json", run_dir / "run.json")
    checkpoint = (run_dir / "checkpoints").resolve() / "step-00000001"
    (checkpoint / "progress.json").write_text("[]")
    kept = digest(run_dir)
    assert refused(capsys, resume) == (
        f"error: {checkpoint / 'progress.json'}: expected an object with the step and epoch, got "
        "a list; resume from an earlier checkpoint by pointing checkpoints/latest at it, or pass "
        "--overwrite"
    )
    assert digest(run_dir) == kept


# --- round 6: links above an output, hand-edited checkpoints, model config.json ----------------


def _link_above(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A path below a symbolic link that leads nowhere, and how the refusal describes the link."""
    link = tmp_path / "results"
    if kind == "dangling":
        link.symlink_to(tmp_path / "unmounted")
        return link, f"{link}, a symbolic link to a missing {tmp_path / 'unmounted'}"
    other = tmp_path / "other"
    link.symlink_to(other)
    other.symlink_to(link)
    return link, f"{link}, a symbolic link to {other}, which loops"


@pytest.mark.parametrize("kind", ["dangling", "loop"])
@pytest.mark.parametrize(
    "command", ["train", "sweep", "eval", "export", "predict", "report", "make-tiny"]
)
def test_a_link_that_leads_nowhere_above_any_output(capsys, lora_run, tmp_path, command, kind):
    """Every command that makes a folder walked up to the nearest existing one and stepped past a
    dangling link (or died on a loop in resolve()): mkdir then failed with a traceback after the
    model loaded, or with a bare `File exists`. One walk (output_folder.nearest_existing) stops
    at the link for all of them."""
    link, described = _link_above(tmp_path, kind)
    out = link / "new" / "folder"
    config = ["--config", str(lora_run / "config.yaml")]
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a fine film\n")
    argv, what = {
        "train": (["train", *config, f"output_dir={out}"], "output_dir"),
        "sweep": (["sweep", *config, f"output_dir={out}", "--grid", "seed=1,2"], "output_dir"),
        "eval": (["eval", str(lora_run), "--out", str(out)], "--out"),
        "export": (["export", str(lora_run), "--out", str(out)], "export: --out"),
        "predict": (
            ["predict", str(lora_run), "--input", str(inputs), "--output", str(out)],
            "--output",
        ),
        "report": (["report", str(lora_run), "--out", str(out)], "--out"),
        "make-tiny": (["make-tiny", "--text", str(inputs), "--out", str(out)], "make-tiny: --out"),
    }[command]
    assert cli_refused(capsys, argv) == f"error: {what} {out} is inside {described}"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["inputs.txt", "results"] + (["other"] if kind == "loop" else [])
    )


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_link_that_leads_nowhere_as_the_text_cache(capsys, fusion_overrides, tmp_path, kind):
    link, described = _link_above(tmp_path, kind)
    line = refused(capsys, [*fusion_overrides, f"fusion.text_cache_dir={link / 'cache'}"])
    assert line == (
        f"error: config key 'fusion.text_cache_dir': {link / 'cache'} is inside {described}"
    )
    line = refused(capsys, [*fusion_overrides, f"fusion.text_cache_dir={link}"])
    assert line == (
        f"error: config key 'fusion.text_cache_dir': {link} is {described.split(', ', 1)[1]}"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{}", "key 'step' is missing"),
        ('{"step": true, "epoch": 0, "batches_in_epoch": 0}',
         "key 'step' is True, expected a whole number of at least 0"),
        ('{"step": 1, "epoch": 0, "batches_in_epoch": 0, "best_metric": NaN}',
         "key 'best_metric' is nan, expected a number or -Infinity"),
        ('{"step": 1, "epoch": 0, "batches_in_epoch": 0, "lr": 0.1}',
         "unknown key 'lr'; a progress record holds ['batches_in_epoch', 'best_checkpoint', "
         "'best_metric', 'epoch', 'evals_without_improvement', 'history', 'loss_count', "
         "'loss_sum', 'skipped_nonfinite', 'step', 'term_sums']"),
        ('{"step": 1, "epoch": -1, "batches_in_epoch": 0}',
         "key 'epoch' is -1, expected a whole number of at least 0"),
        ('{"step": 1, "epoch": 0, "batches_in_epoch": 0, "step": 0}',
         "key 'step' appears twice in one object"),
    ],
    ids=["empty", "bool", "nan", "unknown", "negative", "repeated"],
)  # fmt: skip
def test_a_progress_json_edited_by_hand(capsys, lora_run, tmp_path, content, problem):
    """json.loads took a repeated `step` silently (the last won: the run retrained steps it had
    and pruned a checkpoint), an unknown key was a TypeError traceback after the model loaded."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    progress = run_dir / "checkpoints" / "step-00000001" / "progress.json"
    progress.write_text(content)
    assert resume_refused(capsys, lora_run, run_dir) == (
        f"error: {progress}: {problem}; resume from an earlier checkpoint by pointing "
        "checkpoints/latest at it, or pass --overwrite"
    )


def resume_refused(capsys, lora_run: Path, run_dir: Path) -> str:
    """The one line `--resume` of `run_dir` (a damaged copy of lora_run) gives; the refusal
    leaves the folder as it was."""
    kept = digest(run_dir)
    resume = ["--config", str(lora_run / "config.yaml"), f"output_dir={run_dir}", "--resume"]
    line = refused(capsys, resume)
    assert digest(run_dir) == kept
    return line


@pytest.mark.parametrize(
    "pointer",
    [b"../../elsewhere/step-00000001\n", b"\xff\xfe\x00", b""],
    ids=["outside", "bytes", "empty"],
)
def test_a_latest_pointer_names_only_a_checkpoint_beside_it(capsys, lora_run, tmp_path, pointer):
    """`latest` naming a folder outside the run resumed from it; bytes that are not text were a
    UnicodeDecodeError traceback."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    shutil.copytree(
        run_dir / "checkpoints" / "step-00000001", tmp_path / "elsewhere" / "step-00000001"
    )
    (run_dir / "checkpoints" / "latest").write_bytes(pointer)
    assert resume_refused(capsys, lora_run, run_dir) == (
        f"error: --resume: {run_dir / 'checkpoints' / 'latest'} names no saved checkpoint; write "
        "the name of one of step-00000001 into it"
    )


@pytest.mark.parametrize("damage", ["repeated", "nan"])
@pytest.mark.parametrize("command", ["train", "estimate", "eval"])
def test_a_model_config_json_is_read_strictly(
    capsys, lora_run, tiny_llama, tmp_path, command, damage
):
    """json.loads kept the last of a repeated key and read NaN in every reader of config.json
    (train, estimate, eval's base-model fingerprint): one strict reader
    (model_folder.read_config_json) names the file and key."""
    model = shutil.copytree(tiny_llama, tmp_path / "model")
    config_json = model / "config.json"
    text = config_json.read_text().rstrip().rstrip("}")
    if damage == "repeated":
        config_json.write_text(text + ', "hidden_size": 32}')
        problem = "key 'hidden_size' appears twice in one object"
    else:
        config_json.write_text(text + ', "rope_theta": NaN}')
        problem = "key 'rope_theta' is NaN (not a finite number)"
    base = ["--config", str(lora_run / "config.yaml"), f"model.path={model}"]
    argv = {
        "train": ["train", *base, f"output_dir={tmp_path / 'run'}"],
        "estimate": ["estimate", *base],
        "eval": ["eval", str(_run_on(lora_run, model, tmp_path))],
    }[command]
    assert cli_refused(capsys, argv) == f"error: config key 'model.path': {config_json}: {problem}"


def test_a_model_config_json_may_hold_infinity(tiny_llama, tmp_path):
    """transformers writes +-Infinity in configs it saves (Mamba2's `time_step_limit`: [0.0,
    Infinity]) and reads them back: the strict reader takes it, and refuses only NaN."""
    from emoscale.models import model_folder

    model = shutil.copytree(tiny_llama, tmp_path / "model")
    config_json = model / "config.json"
    text = config_json.read_text().rstrip().rstrip("}")
    config_json.write_text(text + ', "time_step_limit": [0.0, Infinity], "floor": -Infinity}')
    config = model_folder.read_config_json(model, "model.path")
    assert config["time_step_limit"] == [0.0, float("inf")] and config["floor"] == float("-inf")
    model_folder.check(model)  # the whole folder check, transformers' config class included


def test_a_folder_with_its_own_config_class_is_left_to_its_code(tiny_llama, tmp_path):
    """transformers' own config class of a known model_type refuses values the folder's own
    class (auto_map.AutoConfig, trust_remote_code) may take (Phi-3-128k's "su" rope scaling
    under transformers 4): such a folder is not checked against transformers' class."""
    from emoscale.models import model_folder

    model = shutil.copytree(tiny_llama, tmp_path / "model")
    values = json.loads((model / "config.json").read_text())
    values["max_position_embeddings"] = "128k"  # a value transformers' LlamaConfig refuses
    (model / "config.json").write_text(json.dumps(values))
    with pytest.raises(ConfigError):
        model_folder.check_config_values(model, "model.path")
    values["auto_map"] = {"AutoConfig": "configuration_own.OwnConfig"}
    (model / "config.json").write_text(json.dumps(values))
    model_folder.check_config_values(model, "model.path")  # its own class decides


def _run_on(run_dir: Path, model: Path, tmp_path: Path) -> Path:
    """A copy of a finished run whose config names another base model folder."""
    copy = shutil.copytree(run_dir, tmp_path / "run_copy")
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace(str(yaml_path(run_dir)), str(model)))
    return copy


def yaml_path(run_dir: Path) -> str:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["path"]


@pytest.mark.parametrize("damage", ["optimizer_missing", "another_model"])
def test_a_checkpoint_that_fails_to_load_changes_nothing(
    capsys, lora_run, tmp_path, fusion_overrides, damage
):
    """A checkpoint whose damage shows only when it loads (a file missing, another family's
    tensors) was refused after run.json had recorded the resume and a TensorBoard file was made:
    the run folder now stays as it was (run_folder.write_start runs after the load)."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    checkpoint = run_dir / "checkpoints" / "step-00000001"
    if damage == "optimizer_missing":
        (checkpoint / "optimizer.bin").unlink()
        problem = "is damaged (optimizer.bin is missing); resume from an earlier one"
    else:
        fusion_run = tmp_path / "fusion"
        argv = [*fusion_overrides, f"output_dir={fusion_run}", "train.max_steps=1"]
        assert train.main(argv) == 0
        shutil.rmtree(checkpoint)
        shutil.copytree(fusion_run / "checkpoints" / "step-00000001", checkpoint)
        problem = "does not fit the model"
    kept = digest(run_dir)
    resume = ["--config", str(lora_run / "config.yaml"), f"output_dir={run_dir}", "--resume"]
    line = refused(capsys, resume)
    assert line.startswith(f"error: checkpoint {checkpoint} {problem}"), line
    assert digest(run_dir) == kept


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{}", "key 'name' is missing"),
        ('{"name": "csv", "label_names": ["a", "b", "c"], "label_words": ["A", "B"]}',
         "3 label_names but 2 label_words"),
        ('{"name": "csv", "label_names": ["a", 2], "label_words": ["A", "B"]}',
         'key \'label_names\' is ["a", 2], expected a list of at least two strings'),
        ('{"name": "csv", "label_names": ["a", "b"], "label_words": ["A", "B"], "x": 1}',
         "unknown key 'x'; corpus.json holds ['label_names', 'label_words', 'language', 'name', "
         "'paper_metric', 'template']"),
    ],
    ids=["empty", "lengths", "types", "unknown"],
)  # fmt: skip
def test_a_corpus_json_edited_by_hand(capsys, lora_run, tmp_path, content, problem):
    """predict reads the labels and prompt from corpus.json: `{}` was a KeyError traceback."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    (run_dir / "corpus.json").write_text(content)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a fine film\n")
    line = cli_refused(capsys, ["predict", str(run_dir), "--input", str(inputs)])
    assert line == f"error: {run_dir / 'corpus.json'}: {problem}"


@pytest.fixture(scope="module")
def fusion_run(tone_corpus, tiny_wavlm, tiny_roberta, tmp_path_factory):
    from emoscale.tiny import demo_fusion

    root = tmp_path_factory.mktemp("fusion_run")
    overrides = demo_fusion.overrides(tone_corpus, tiny_wavlm, tiny_roberta)
    run_dir = root / "run"
    argv = [*overrides, f"output_dir={run_dir}", f"fusion.text_cache_dir={root / 'cache'}"]
    assert train.main([*argv, "train.max_steps=1"]) == 0
    return run_dir


def test_fusion_predict_input_mistakes_name_the_file_and_leave_nothing(
    capsys, fusion_run, tmp_path
):
    """`input line 1: ...` named no file; a missing clip in the first chunk of a --output job
    left a <OUT>.parts folder with its job.json (the parts folder is now made with the first
    chunk)."""
    inputs = tmp_path / "clips.tsv"
    inputs.write_text("just a transcript\n")
    line = cli_refused(capsys, ["predict", str(fusion_run), "--input", str(inputs)])
    assert line == f"error: {inputs}:1: expected audio_path<TAB>transcript"
    inputs.write_text("missing.wav\tsome words\n")
    output = tmp_path / "labels.jsonl"
    argv = ["predict", str(fusion_run), "--input", str(inputs), "--output", str(output)]
    assert cli_refused(capsys, argv) == f"error: {tmp_path / 'missing.wav'}: audio file not found"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clips.tsv"]


@pytest.mark.parametrize("content", ['["happy"]', '["happy", 3]'])
def test_a_fusion_runs_labels_json_edited_by_hand(capsys, fusion_run, tmp_path, content):
    run_dir = shutil.copytree(fusion_run, tmp_path / "run")
    (run_dir / "corpus.json").unlink()  # a run from before corpus.json: labels.json is read
    (run_dir / "model" / "labels.json").write_text(content)
    inputs = tmp_path / "clips.tsv"
    inputs.write_text("a.wav\tsome words\n")
    line = cli_refused(capsys, ["predict", str(run_dir), "--input", str(inputs)])
    assert line == (
        f"error: {run_dir / 'model' / 'labels.json'}: expected a list of at least two labels "
        "(strings)"
    )


@pytest.mark.parametrize("key", ["model.path", "model.audio_path"])
def test_config_json_values_transformers_refuses(
    capsys, lora_run, fusion_overrides, tiny_llama, tiny_wavlm, tmp_path, key
):
    """A hidden_size written as text: a traceback from the speech encoder's config class, and
    `estimate` blamed the tokenizer. Every model folder now goes through transformers' config
    class of its model_type before anything else loads (model_folder.check_config_values)."""
    source = tiny_llama if key == "model.path" else tiny_wavlm
    model = shutil.copytree(source, tmp_path / "model")
    values = json.loads((model / "config.json").read_text())
    values["hidden_size"] = "sixty-four"
    (model / "config.json").write_text(json.dumps(values))
    if key == "model.path":
        argv = ["estimate", "--config", str(lora_run / "config.yaml"), f"model.path={model}"]
        line = cli_refused(capsys, argv)
    else:
        line = refused(capsys, [*fusion_overrides, f"model.audio_path={model}"])
    assert line.startswith(
        f"error: config key {key!r}: transformers cannot read {model / 'config.json'} "
        "(StrictDataclassFieldValidationError: Validation error for field 'hidden_size': "
    )


@pytest.mark.parametrize("missing", ["adapter_config.json", "adapter_model.safetensors"])
@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_a_finished_run_without_its_trained_files(capsys, lora_run, tmp_path, command, missing):
    """A LoRA run's model/ without adapter_config.json: PEFT's `Can't find 'adapter_config.json'`
    traceback after the base model loaded (eval, predict)."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    (run_dir / "model" / missing).unlink()
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a fine film\n")
    argv = {
        "eval": ["eval", str(run_dir)],
        "predict": ["predict", str(run_dir), "--input", str(inputs)],
        "export": ["export", str(run_dir), "--out", str(tmp_path / "merged")],
    }[command]
    assert cli_refused(capsys, argv) == (
        f"error: {run_dir / 'model'}: no {missing} (did the run finish?)"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"model: [\n", ":2:1: expected the node content, but found '<stream end>'"),
     (b"seed: 1 # caf\xe9\n", ": not UTF-8 text (byte 13: invalid continuation byte)"),
     (b"- 1\n", ": expected a mapping of sections, got list")],
    ids=["yaml", "latin-1", "list"],
)  # fmt: skip
def test_report_reads_a_runs_config_yaml_as_train_does(
    capsys, lora_run, tmp_path, content, problem
):
    """report read a finished run's config.yaml with read_text() + YAML: a traceback for each."""
    run_dir = shutil.copytree(lora_run, tmp_path / "run")
    (run_dir / "config.yaml").write_bytes(content)
    line = cli_refused(capsys, ["report", str(run_dir), "--out", str(tmp_path / "report")])
    assert line == f"error: config file {run_dir / 'config.yaml'}{problem}"
    assert not (tmp_path / "report").exists()


def test_a_prompt_longer_than_data_max_length(capsys, run_overrides, tmp_path):
    """A template that alone fills data.max_length cut every text to one token (printed only as
    `truncated 480 texts`); a 200,000-character one made every sequence that long and the run
    seemed to hang. Refused when the family is built, before any weights load."""
    template = "Read this review and answer with one of {labels}. " * 20 + "Review: {text}"
    line = refused(
        capsys,
        [*run_overrides, f"prompt.template={template}", "data.max_length=64"],
        tmp_path / "run",
    )
    assert line.startswith(
        "error: config key 'data.max_length': 64 tokens leave no room for the text: the prompt "
        "around it (prompt.template, the label words, the chat template) takes "
    )
    assert line.endswith(" tokens with this tokenizer")
    assert int(line.split(" takes ")[1].split()[0]) >= 64


def test_a_csv_field_past_the_size_limit_is_not_called_a_quoting_error(
    capsys, run_overrides, demo_corpus, tmp_path
):
    """csv's `field larger than field limit` was worded `malformed quoting (...)`."""
    from emoscale.data.generic import MAX_FIELD_CHARACTERS

    folder = corpus_with_test(
        tmp_path / "corpus", demo_corpus, HEADER + "x" * (MAX_FIELD_CHARACTERS + 1) + ",positive\n"
    )
    line = refused(capsys, [*run_overrides, f"data.path={folder}"], tmp_path / "run")
    assert line == (
        f"error: {folder / 'test.csv'}:2: a field longer than 10,000,000 characters (or a quote "
        "left open that swallowed the rows after it)"
    )


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [("ACCELERATE_USE_CPU", "maybe", "expected true or false"),
     ("ACCELERATE_MIXED_PRECISION", "fp77", "accelerate takes no, fp16, bf16, fp8"),
     ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "abc", "expected a whole number"),
     ("WORLD_SIZE", "two", "expected a whole number"),
     ("RANK", "\u00b2", "expected a whole number"),  # '²'.isdigit() is true; int() refuses it
     ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "4", "expected 0-3")],
    ids=["bool", "precision", "accumulation", "world", "superscript", "stage"],
)  # fmt: skip
def test_launcher_variables_with_garbage(
    capsys, monkeypatch, run_overrides, tmp_path, name, value, problem
):
    """accelerate's `invalid truth value` traceback, an int() traceback in the rules, or (mixed
    precision) a value ignored without a word: one line naming the variable, before any work."""
    monkeypatch.setenv(name, value)
    line = refused(capsys, run_overrides, tmp_path / "run")
    assert line == f"error: environment variable {name} is {value!r}; {problem}"


def test_a_rank_outside_the_world(capsys, monkeypatch, run_overrides, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    line = refused(capsys, run_overrides, tmp_path / "run")
    assert line == (
        "error: environment variable RANK is 5 but WORLD_SIZE is 2; a rank counts from 0 to "
        "WORLD_SIZE - 1"
    )


def test_a_world_of_no_processes(capsys, monkeypatch, run_overrides, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "0")  # RANK unset: the message once read it (KeyError)
    line = refused(capsys, run_overrides, tmp_path / "run")
    assert line == "error: environment variable WORLD_SIZE is 0; expected at least 1"


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_deepspeed_is_read_alike_by_the_rules_the_accelerator_and_the_resume_command(
    monkeypatch, tmp_path, value
):
    """ACCELERATE_USE_DEEPSPEED=1 counted as DeepSpeed for the rules (accelerate's truth values)
    but not for the accelerator or the preemption resume command (== "true"), which then resumed
    a ZeRO run without DeepSpeed: one reading, config/rules.uses_deepspeed."""
    from emoscale.config import rules
    from emoscale.training import preemption

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", value)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert rules.uses_deepspeed() and rules.deepspeed_zero_stage() == 2
    assert "--use_deepspeed" in preemption.resume_command(tmp_path, 2)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "0")
    assert not rules.uses_deepspeed() and rules.deepspeed_zero_stage() is None
    assert "--use_deepspeed" not in preemption.resume_command(tmp_path, 2)


def test_estimate_of_a_config_no_model_can_be_built_from(capsys, lora_run, tiny_llama, tmp_path):
    """vocab_size -5 passes transformers' config class; building the meta model was a traceback."""
    model = shutil.copytree(tiny_llama, tmp_path / "model")
    values = json.loads((model / "config.json").read_text())
    values["vocab_size"] = -5
    (model / "config.json").write_text(json.dumps(values))
    argv = ["estimate", "--config", str(lora_run / "config.yaml"), f"model.path={model}"]
    line = cli_refused(capsys, argv)
    assert line.startswith(
        f"error: config key 'model.path': no model can be built from {model / 'config.json'} ("
    ), line


def test_the_demo_with_an_unwritable_cache(capsys, monkeypatch):
    """`emoscale train` (the demo) with HOME or EMOSCALE_CACHE where nothing can be written was
    mkdir's traceback."""
    monkeypatch.setenv("EMOSCALE_CACHE", "/sys/emoscale-cache")  # sysfs refuses, even to root
    line = refused(capsys, [])
    assert line == (
        "error: the demo's cache folder (EMOSCALE_CACHE or ~/.cache/emoscale) "
        "/sys/emoscale-cache/demo: cannot write in /sys (Operation not permitted)"
    )
