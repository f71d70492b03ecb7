"""The `emoscale` command: every subcommand's --help shows examples, bad input to each ends with one
`error: ...` line and exit code 2, and cv, sweep, recipes, estimate and export run end to end."""

from __future__ import annotations

import json

import pytest
from corpus_files import write_mastodon  # noqa: E402

from emoscale import cli  # noqa: E402
from emoscale.studies import recipes  # noqa: E402
from emoscale.studies.report import mean_std  # noqa: E402
from emoscale.tiny import demo  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SUBCOMMANDS = [
    "train",
    "eval",
    "predict",
    "cv",
    "sweep",
    "report",
    "recipes",
    "estimate",
    "export",
    "make-tiny",
]


def test_the_command_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"    {name}" in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_shows_an_example(name, capsys):
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: emoscale {name}")
    assert "example" in out and f"emoscale {name} " in out.split("example", 1)[1]


BAD_INPUT = {
    "train": (
        ["train", "--recipe", "sst2_lroa"],
        "error: unknown recipe 'sst2_lroa' (did you mean sst2_lora",
    ),
    "eval": (["eval", "nowhere"], "error: nowhere is not a run folder (no config.yaml)"),
    "predict": (["predict", "nowhere"], "error: nowhere is not a run folder (no config.yaml)"),
    "cv": (
        ["cv", "--recipe", "sst2_lora"],
        "error: config key 'data.fold': dataset 'sst2' has official splits and no folds",
    ),
    "sweep": (
        ["sweep", "--recipe", "sst2_lora", "--grid", "lora.rank=4,8"],
        "error: unknown config key 'lora.rank' (did you mean 'lora.r'?)",
    ),
    "sweep grid": (
        ["sweep", "--grid", "lora.r"],
        "error: --grid 'lora.r': expected key=value1,value2,...",
    ),
    "report": (["report", "nowhere"], "error: nowhere is not a folder"),
    "recipes": (["recipes", "sst9_lora"], "error: unknown recipe 'sst9_lora'"),
    "estimate": (["estimate", "--recipe", "sst2_lora"], "error: config key 'model.path': required"),
    "estimate gpus": (
        ["estimate", "--num-gpus", "0"],
        "error: emoscale estimate: argument --num-gpus: expected a whole number of at least 1, got '0'",
    ),
    "estimate method": (
        ["estimate", "--recipe", "sst2_none"],
        "error: config key 'model.method': estimate sizes training runs",
    ),
    "export": (["export", "nowhere", "--out", "x"], "error: run folder nowhere does not exist"),
    "make-tiny": (
        ["make-tiny", "--text", "nowhere.txt", "--out", "x"],
        "error: --text nowhere.txt does not exist",
    ),
    "usage": (
        ["cv", "--bogus"],
        "error: emoscale cv: unrecognized arguments: --bogus (see emoscale cv --help)",
    ),
    "both sources": (
        ["train", "--recipe", "sst2_lora", "--config", "run.yaml"],
        "error: emoscale train: argument --config: not allowed with argument --recipe",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_error_line_and_exit_code_2(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, start = BAD_INPUT[case]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), captured.err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_overrides_may_follow_the_options():
    args = cli.parse(["train", "--recipe", "sst2_lora", "--overwrite", "train.lr=1e-4", "seed=3"])
    assert (args.recipe, args.overwrite, args.overrides) == (
        "sst2_lora",
        True,
        ["train.lr=1e-4", "seed=3"],
    )


def test_recipes_lists_every_recipe_with_its_row_and_target(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in recipes.names():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        row = recipes.table_row(recipes.load(name))
        assert row.dataset in line and row.method in line
        # the paper's numbers for the row (tests/studies/test_recipes.py checks the values)
        assert "(LLM paper, Table" in line or "(LoRA-MER, Table" in line
    assert cli.main(["recipes", "mosi3_lora"]) == 0
    assert capsys.readouterr().out == recipes.path("mosi3_lora").read_text()


def test_estimate_sizes_a_recipe_on_a_model_folder(tiny_llama, capsys):
    """The answer length comes from the run's tokenizer and label words (SST-2's Negative /
    Positive + EOS here), not a fixed 4; a longer label lengthens it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    longest = max(
        len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        for word in ("Negative", "Positive")
    )
    assert longest != 4  # else the test could not tell the count from the fallback
    assert cli.main(["estimate", "--recipe", "sst2_ptuning_v2", f"model.path={tiny_llama}"]) == 0
    out = capsys.readouterr().out
    assert f"ptuning_v2, batch 8 x {128 + longest} tokens, bfloat16, 1 GPU(s)" in out
    assert f"answer: {longest} tokens, the longest label answer (" in out
    assert "zero3+offload" in out and "fits 24GB" in out

    words = "prompt.labels=[Negative,Positive and even more positive than that]"
    assert (
        cli.main(["estimate", "--recipe", "sst2_ptuning_v2", f"model.path={tiny_llama}", words])
        == 0
    )
    out = capsys.readouterr().out
    longer = int(out.split("answer: ")[1].split()[0])
    assert longer > longest + 4  # five more words
    assert "'Positive and even more positive than that' + end of answer" in out
    assert f"batch 8 x {128 + longer} tokens" in out


def test_estimate_without_a_tokenizer_assumes_four_answer_tokens(tiny_llama, tmp_path, capsys):
    shape_only = tmp_path / "shape"
    shape_only.mkdir()
    (shape_only / "config.json").write_bytes((tiny_llama / "config.json").read_bytes())
    assert cli.main(["estimate", "--recipe", "sst2_ptuning_v2", f"model.path={shape_only}"]) == 0
    out = capsys.readouterr().out
    assert "ptuning_v2, batch 8 x 132 tokens" in out
    assert f"answer: 4 tokens assumed ({shape_only} holds no tokenizer)" in out
    # A generic corpus names its labels in its train split: without data.path, 4 too.
    generic = ["estimate", "--recipe", "sst2_lora", f"model.path={tiny_llama}", "data.dataset=csv"]
    assert cli.main(generic + ["data.path=null"]) == 0
    assert (
        "answer: 4 tokens assumed (the labels of data.dataset=csv come from its train split: "
        "give data.labels or data.path)" in capsys.readouterr().out
    )
    # estimate reads no data: a generic folder it cannot read gives the fallback and why.
    empty = tmp_path / "no_corpus"
    empty.mkdir()
    assert cli.main(generic + [f"data.path={empty}"]) == 0
    assert "answer: 4 tokens assumed (the labels could not be read: " in capsys.readouterr().out


@pytest.fixture
def mastodon_corpus(tmp_path):
    def dialogues(count: int, tag: str) -> list[str]:
        return [
            f"{p} {'*+-'[(d + p) % 3]}_I {tag} post {d} {p}" for d in range(count) for p in range(2)
        ]

    return write_mastodon(tmp_path / "mastodon", dialogues(8, "train"), dialogues(3, "test"))


@pytest.mark.slow
def test_cv_runs_every_fold_under_one_parent_and_summarizes(
    tiny_llama, mastodon_corpus, tmp_path, capsys
):
    parent = tmp_path / "cv"
    argv = [
        "cv",
        "--recipe",
        "mastodon_none",
        f"model.path={tiny_llama}",
        f"data.path={mastodon_corpus}",
    ]
    argv += [
        "data.num_folds=2",
        "model.dtype=float32",
        "train.mixed_precision='no'",
        f"output_dir={parent}",
    ]
    assert cli.main(argv) == 0
    summary = json.loads((parent / "cv.json").read_text())
    folds = [json.loads((parent / f"fold{i}" / "metrics.json").read_text()) for i in (0, 1)]
    assert [fold["name"] for fold in summary["folds"]] == ["fold0", "fold1"]
    accuracy = [fold["test"]["accuracy"] for fold in folds]
    assert summary["mean"]["test"]["accuracy"] == pytest.approx(mean_std(accuracy)[0])
    assert summary["std"]["test"]["accuracy"] == pytest.approx(mean_std(accuracy)[1])
    assert "| **mean** |" in (parent / "cv.md").read_text()
    # the dev split differs per fold (a different tenth of the dialogues), the test split does not
    assert folds[0]["dev"]["num_examples"] + folds[1]["dev"]["num_examples"] == 16
    capsys.readouterr()
    assert cli.main(argv) == 0  # again: the finished folds are kept, not retrained
    assert capsys.readouterr().out.count("finished earlier, kept") == 2
    assert cli.main(["report", str(parent), "--out", str(tmp_path / "report")]) == 0
    assert "| Mastodon | zero-shot | 2 |" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_sweep_trains_every_point_and_marks_the_best(tiny_llama, tmp_path, capsys):
    corpus = demo.write_corpus(tmp_path / "corpus", {"train": 32, "dev": 8, "test": 8})
    parent = tmp_path / "sweep"
    base = demo.overrides(corpus, tiny_llama) + ["train.max_steps=2", f"output_dir={parent}"]
    assert cli.main(["sweep", *base, "--grid", "lora.r=2,4", "seed=1,2"]) == 0
    record = json.loads((parent / "sweep.json").read_text())
    names = ["lora.r=2,seed=1", "lora.r=2,seed=2", "lora.r=4,seed=1", "lora.r=4,seed=2"]
    assert [point["name"] for point in record["points"]] == names
    assert all((parent / name / "metrics.json").is_file() for name in names)
    config = (parent / "lora.r=4,seed=2" / "config.yaml").read_text()
    assert "  r: 4\n" in config and "seed: 2\n" in config
    table = (parent / "sweep.md").read_text()
    assert table in capsys.readouterr().out
    assert sum("**" in line for line in table.splitlines()) == 1  # one best point
    assert cli.main(["report", str(parent), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| LoRA [lora.r=2] | 2 |" in text and "| LoRA [lora.r=4] | 2 |" in text  # seeds averaged


@pytest.mark.slow
def test_export_merges_a_lora_run(run_overrides, tmp_path, capsys):
    from emoscale import train
    from emoscale.config import load_config

    run_dir, _ = train.run(load_config(overrides=run_overrides + ["train.max_steps=2"]))
    assert cli.main(["export", str(run_dir), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert "merged model saved to" in capsys.readouterr().out


def test_grid_values_split_on_top_level_commas_only():
    from emoscale.studies.sweep import grid_points, parse_grid, point_name

    grid = parse_grid(["lora.target_modules=[q_proj,v_proj],[q_proj]", "train.lr=1e-4,3e-4"])
    assert grid == {
        "lora.target_modules": ["[q_proj,v_proj]", "[q_proj]"],
        "train.lr": ["1e-4", "3e-4"],
    }
    points = grid_points(grid)
    assert len(points) == 4 and points[1] == {
        "lora.target_modules": "[q_proj,v_proj]",
        "train.lr": "3e-4",
    }
    assert point_name(points[1]) == "lora.target_modules=-q_proj,v_proj-,train.lr=3e-4"


def test_make_tiny_writes_a_whole_folder_and_never_over_files(capsys, tmp_path):
    from transformers import AutoModelForCausalLM

    texts = tmp_path / "texts.txt"
    texts.write_text("a happy little film\na sad grey film\n" * 20)
    out = tmp_path / "models" / "tiny"
    argv = ["make-tiny", "--text", str(texts), "--out", str(out), "--hidden-size", "16"]
    assert cli.main(argv) == 0
    assert AutoModelForCausalLM.from_pretrained(out).config.hidden_size == 16
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny"]  # no temporary folder
    capsys.readouterr()
    weights = (out / "model.safetensors").read_bytes()
    assert cli.main([*argv[:-2], "--hidden-size", "32"]) == 2  # the same --out, other weights
    assert capsys.readouterr().err == f"error: make-tiny: --out {out} exists and is not empty\n"
    assert (out / "model.safetensors").read_bytes() == weights


def test_tiny_encoders_never_write_over_files(tmp_path):
    from emoscale.errors import EmoscaleError
    from emoscale.tiny.encoders import make_tiny_speech_encoder, make_tiny_text_encoder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(
        EmoscaleError, match=f"^tiny speech encoder: {mine} exists and is not empty$"
    ):
        make_tiny_speech_encoder(mine)
    with pytest.raises(EmoscaleError, match=f"^tiny text encoder: {mine} exists and is not empty$"):
        make_tiny_text_encoder(mine, ["a film"] * 10)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder (as pytest's mktemp makes) is fine
    assert (
        make_tiny_text_encoder(empty, ["a film"] * 10, vocab_size=300) / "config.json"
    ).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]
