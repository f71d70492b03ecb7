"""Every shipped recipe validates, is a table row of its own with a target entry, and runs: a few
steps of one recipe per corpus (the methods in turn) through `emoscale train --recipe`, with tiny
models and a tiny corpus in the recipe's own file layout swapped in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from corpus_files import (  # noqa: E402
    MMSA_COLUMNS,
    clip,
    write_friends,
    write_iemocap,
    write_label_csv,
    write_m3ed,
    write_mastodon,
    write_wav,
)

from emoscale import cli  # noqa: E402
from emoscale.studies import published, recipes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")
NAMES = recipes.names()


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one state per process, mixed precision included; the recipes train in bf16
    and the tests around them in fp32, so each test starts and ends with a fresh state."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


LLM = [name for name in NAMES if not name.startswith("iemocap_")]
FUSION = [name for name in NAMES if name.startswith("iemocap_")]


def test_the_papers_rows_are_all_there():
    corpora = ("sst2", "sst5", "mosi2", "mosi3", "chsims", "mastodon", "friends", "m3ed")
    assert sorted(LLM) == sorted(
        f"{c}_{m}" for c in corpora for m in ("none", "ptuning_v2", "lora")
    )
    audio = {
        f"iemocap_audio_{how}_{arch}" for how in ("frozen", "lora") for arch in ("hubert", "wavlm")
    }
    pairs = {
        f"iemocap_fusion_{how}_{arch}" for how in ("frozen", "lora") for arch in ("hubert", "wavlm")
    }
    sweep = {f"iemocap_fusion_lora_wavlm_lambda{value}" for value in ("0", "0.1", "0.5", "1", "2")}
    assert set(FUSION) == audio | pairs | sweep | {"iemocap_text_frozen_roberta"}


@pytest.mark.parametrize("name", NAMES)
def test_recipe_validates_and_says_how_to_run_it(name):
    config = recipes.load(name)  # the schema and every rule in rules.py
    text = recipes.path(name).read_text()
    header = text.split("\n\n")[0]
    assert all(line.startswith("#") for line in header.splitlines())
    assert f"emoscale train --recipe {name}" in header
    assert "# target (" in text  # the paper's numbers for the row, in the header
    prefix = {"mosi": ("mosi2", "mosi3")}.get(config.data.dataset, (config.data.dataset,))
    assert name.split("_")[0] in prefix
    if config.model.family == "prompt_lm":
        # The LLM paper: batch 16 on one 24 GB GPU in bf16, LoRA rank 8, 32 virtual tokens.
        assert (config.model.path, config.data.path) == (None, None)  # the user's to fill in
        assert config.model.method == name.split("_", 1)[1]
        assert (
            config.train.batch_size * config.train.grad_accum == 16 or config.model.method == "none"
        )
        assert (config.model.dtype, config.train.mixed_precision) == ("bfloat16", "bf16")
        assert config.lora.r == 8 and config.ptuning.num_virtual_tokens == 32
    else:
        assert config.data.dataset == "iemocap" and config.eval.metric == "ua"
        assert config.train.batch_size == 16 and config.train.lr == 3e-4


def test_every_recipe_is_its_own_row_with_a_target_entry():
    rows = {name: recipes.table_row(recipes.load(name)) for name in NAMES}
    assert len(set(rows.values())) == len(NAMES)
    targets = published.recipe_targets(published.read_targets())
    assert sorted(targets) == NAMES
    assert rows["mosi3_lora"] == ("prompt_lm", "MOSI-3", "LoRA")
    assert rows["iemocap_fusion_lora_wavlm_lambda0.5"] == (
        "fusion",
        "IEMOCAP",
        "WavLM LoRA + RoBERTa frozen, λ=0.5",
    )


# --- the papers' numbers (recipes/targets.yaml) ----------------------------------------------------

# Numbers per table, counted in the papers' text (`-` and empty cells are not numbers).
PUBLISHED_COUNTS = {
    "LLM paper, Table 2": 16,
    "LLM paper, Table 3": 16,
    "LLM paper, Table 4": 14,
    "LLM paper, Table 5": 27,
    "LoRA-MER, Table 1": 18,
    "LoRA-MER, Table 2": 12,
    "LoRA-MER, Table 3": 9,
}


def test_the_targets_file_holds_every_published_number_as_a_percentage_or_null():
    raw = yaml.safe_load(recipes.TARGETS_FILE.read_text())
    rows = published.read_targets()
    assert len(rows) == len(raw) == 62
    counts = {}
    for row in rows:
        assert row.values, row
        for value in row.values.values():
            assert value is None or (isinstance(value, float) and 0 < value <= 100), row
        numbers = sum(value is not None for value in row.values.values())
        counts[row.source] = counts.get(row.source, 0) + numbers
    assert counts == PUBLISHED_COUNTS
    # The LLM paper's F1 is macro-F1, weighted F1 on M3ED only (Table 5's caption).
    for row in rows:
        if row.family == "prompt_lm":
            f1 = {"macro_f1", "weighted_f1"} & set(row.values)
            assert f1 == ({"weighted_f1"} if row.dataset == "M3ED" else {"macro_f1"}), row


def _cell(source: str, dataset: str, system: str) -> dict:
    (row,) = [
        row
        for row in published.read_targets()
        if (row.source, row.dataset, row.system) == (source, dataset, system)
    ]
    return {key: published.number_text(value) for key, value in row.values.items()}


def test_spot_values_equal_the_papers_tables():
    # One row of each table, as the papers print it (000_*.txt and 002_*.txt in shared/papers).
    # Table 2: "ChatGLM2 (LoRA)	87.02	86.56	83.82	57.04"
    assert _cell("LLM paper, Table 2", "MOSI-2", "ChatGLM2 (LoRA)") == {
        "accuracy": "87.02", "macro_f1": "86.56"}  # fmt: skip
    assert _cell("LLM paper, Table 2", "MOSI-3", "ChatGLM2 (LoRA)") == {
        "accuracy": "83.82", "macro_f1": "57.04"}  # fmt: skip
    # Table 3: "ChatGLM2 (P-Tuning)	95.20	95.20	57.59	56.45"
    assert _cell("LLM paper, Table 3", "SST-5", "ChatGLM2 (P-Tuning)") == {
        "accuracy": "57.59", "macro_f1": "56.45"}  # fmt: skip
    # Table 4: "DARER (2022) [23]	-	-	-	59.59"
    assert _cell("LLM paper, Table 4", "Mastodon", "DARER (2022) [23]") == {
        "accuracy": "–", "macro_f1": "59.59"}  # fmt: skip
    # Table 5: "ChatGPT (LoRA)	72.83	52.97	51.93" (ChatGLM2 with LoRA) and M3ED's "MDI (2022) [14]"
    assert _cell("LLM paper, Table 5", "Friends", "ChatGPT (LoRA)") == {
        "accuracy": "72.83", "macro_f1": "52.97", "ua": "51.93"}  # fmt: skip
    assert _cell("LLM paper, Table 5", "M3ED", "MDI (2022) [14]")["weighted_f1"] == "49.42"
    # LoRA-MER Table 1: "LoRA WavLM + Frozen RoBERTa	80.18	79.39"; Table 2: "0.0	78.60	76.67";
    # Table 3: "Atmaja et al. (2019) [27]		75.5" (UA empty), printed with one decimal.
    assert _cell("LoRA-MER, Table 1", "IEMOCAP", "Audio+Text: LoRA WavLM + Frozen RoBERTa") == {
        "ua": "80.18", "wa": "79.39"}  # fmt: skip
    assert _cell("LoRA-MER, Table 2", "IEMOCAP", "λ = 0.0") == {"ua": "78.60", "wa": "76.67"}
    assert _cell("LoRA-MER, Table 3", "IEMOCAP", "Atmaja et al. (2019) [27]") == {
        "ua": "–", "wa": "75.5"}  # fmt: skip
    targets = published.recipe_targets(published.read_targets())
    assert (targets["sst2_lora"].values["accuracy"], targets["m3ed_none"].system) == (
        95.69,
        "ChatGLM2",
    )
    assert targets["iemocap_fusion_lora_wavlm_lambda2"].values == {"ua": 70.95, "wa": 69.62}


def test_recipes_follow_the_papers_settings():
    # LLM paper, Sec. 4.2 and Table 1: the prompt, SST's class names, the binary CH-SIMS task,
    # macro-F1 for Friends; LoRA-MER, Sec. 3.2 and 3.3: lambda 0.25, lr 3e-4, batch 16, 40 epochs.
    paper_prompt = "Classify the sentiment of the sentence to Positive, Negative or Neutral"
    for method in ("none", "ptuning_v2", "lora"):
        assert recipes.load(f"mosi3_{method}").prompt.template == paper_prompt + ": {text}"
        assert recipes.load(f"sst5_{method}").prompt.labels == [
            "Negative", "Somewhat negative", "Neutral", "Somewhat positive", "Positive"]  # fmt: skip
        friends = recipes.load(f"friends_{method}")
        assert friends.prompt.template.startswith("Classify the sentiment of the sentence to")
        assert friends.eval.metric == "macro_f1"
        assert recipes.load(f"chsims_{method}").data.target == "2class"
        assert recipes.load(f"mosi2_{method}").data.target == "2class"
    paper = recipes.load("iemocap_fusion_lora_wavlm")
    assert (paper.fusion.mine_weight, paper.fusion.dim, paper.fusion.lora_r) == (0.25, 256, 2)
    assert (paper.train.lr, paper.train.batch_size, paper.train.epochs) == (3e-4, 16, 40)
    # r=2 on q and v of 12 layers 768 wide: the paper's "74K" trainable parameters.
    assert 12 * 2 * paper.fusion.lora_r * (768 + 768) == 73_728


def test_emoscale_recipes_shows_every_published_row(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    for row in published.read_targets():  # a line with the row's system, dataset and numbers
        numbers = [published.number_text(v) for v in row.values.values() if v is not None]
        assert any(
            row.system in line and f" {row.dataset} " in line and all(n in line for n in numbers)
            for line in out.splitlines()
        ), row
    assert "published, no emoscale recipe  MOSI-2     TFR-Net (2021) [15]" in out
    assert out.rstrip().endswith("62 published rows in targets.yaml")


# --- tiny corpora in each recipe's layout ----------------------------------------------------------

WORDS = {"negative": "awful dull", "neutral": "long in colour", "positive": "lovely superb"}


def _sst(folder: Path, prefix: str, labels: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 12), ("dev", 4), ("test", 4)):
        lines = [
            f"{i % len(labels)} the film was {WORDS[labels[i % len(labels)]]} ."
            for i in range(count)
        ]
        (folder / f"{prefix}.{split}").write_text("\n".join(lines) + "\n")
    return folder


def _mmsa(folder: Path, columns: tuple[str, ...], scores: list[float], chinese: bool) -> Path:
    rows = []
    for mode, count in (("train", 12), ("valid", 4), ("test", 4)):
        for i in range(count):
            score = scores[i % len(scores)]
            text = (
                f"我觉得还行{i}"
                if chinese
                else f"it was {WORDS['positive' if score > 0 else 'negative']}"
            )
            rows.append(clip(f"{mode}_video{i // 2}", i, text, score, mode))
    return write_label_csv(folder, rows, columns)


def _mastodon(folder: Path) -> Path:
    def dialogues(count: int, tag: str) -> list[str]:
        return [
            f"{p} {'*+-'[(d + p) % 3]}_I {tag} post {d} {p}" for d in range(count) for p in range(2)
        ]

    return write_mastodon(folder, dialogues(10, "train"), dialogues(3, "test"))


def _friends(folder: Path) -> Path:
    emotions = ("neutral", "joy", "sadness", "anger")
    dialogue = [("Ross", f"line {i}", emotions[i % 4]) for i in range(6)]
    return write_friends(
        folder, {"train": [dialogue, dialogue], "dev": [dialogue], "test": [dialogue]}
    )


def _m3ed(folder: Path) -> Path:
    emotions = ("Neutral", "Happy", "Sad", "Anger")

    def series(name: str) -> dict:
        lines = [(f"{name}_1_{i}", "A", f"我说了{i}", emotions[i % 4]) for i in range(1, 7)]
        return {f"{name}_1": ({"A": "安迪"}, lines)}

    names = {"train": ["anjia"], "val": ["shaonianpai"], "test": ["huanlesong"]}
    return write_m3ed(folder, {n: series(n) for ns in names.values() for n in ns}, names)


def _iemocap(folder: Path) -> Path:
    codes = [("F000", "neu", "Excuse me."), ("M000", "hap", "Yeah, great."), ("F001", "ang", "Who told you?"),
             ("M001", "sad", "I'm sorry."), ("F002", "exc", "Wonderful!"), ("M002", "neu", "Okay.")]  # fmt: skip
    write_iemocap(folder, {f"Ses0{s}F_impro01": codes for s in range(1, 6)})
    for wav in folder.glob("Session*/sentences/wav/*/*.wav"):
        write_wav(wav, frames=8000)  # half a second: the speech encoder's SpecAugment needs frames
    return folder


CORPORA = {
    "sst2": lambda folder: _sst(folder, "stsa.binary", ["negative", "positive"]),
    "sst5": lambda folder: _sst(
        folder, "stsa.fine", ["negative", "negative", "neutral", "positive", "positive"]
    ),
    "mosi": lambda folder: _mmsa(folder, MMSA_COLUMNS, [-1.5, 0.0, 2.0], chinese=False),
    "chsims": lambda folder: _mmsa(folder, MMSA_COLUMNS, [-0.8, 0.4, 0.0], chinese=True),
    "mastodon": _mastodon,
    "friends": _friends,
    "m3ed": _m3ed,
    "iemocap": _iemocap,
}
# One recipe per corpus, the three methods in turn, and the speech recipes' three kinds.
RUN = ["sst2_lora", "sst5_ptuning_v2", "mosi2_none", "mosi3_lora", "chsims_ptuning_v2",
       "mastodon_none", "friends_lora", "m3ed_ptuning_v2",
       "iemocap_audio_lora_hubert", "iemocap_text_frozen_roberta", "iemocap_fusion_lora_wavlm"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN)
def test_recipe_runs_a_few_steps_with_tiny_models(
    name, tmp_path, tmp_path_factory, tiny_llama, tiny_wavlm, tiny_hubert, tiny_roberta, capsys
):
    config = recipes.load(name)
    data = CORPORA[config.data.dataset](tmp_path / "corpus")
    run_dir = tmp_path / "run"
    overrides = [f"data.path={data}", f"output_dir={run_dir}", "train.max_steps=2"]
    if config.model.family == "prompt_lm":
        overrides.append(f"model.path={tiny_llama}")
    else:
        cache = tmp_path_factory.getbasetemp() / "text_feature_cache"
        overrides += ["train.num_workers=0", f"fusion.text_cache_dir={cache}"]
        if config.model.audio_path:
            speech = tiny_hubert if "hubert" in name else tiny_wavlm
            overrides.append(f"model.audio_path={speech}")
        if config.model.text_path:
            overrides.append(f"model.text_path={tiny_roberta}")
    assert cli.main(["train", "--recipe", name, *overrides]) == 0, capsys.readouterr().err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] > 0
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    # The run's config is the recipe's plus the overrides, and it is still the recipe's table row.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["method"] == config.model.method
    assert saved["train"]["batch_size"] == config.train.batch_size
    assert recipes.table_row(saved) == recipes.table_row(config)
    trains = not (config.model.family == "prompt_lm" and config.model.method == "none")
    assert (run_dir / "model").is_dir() == trains


def test_placeholders_fail_clearly_when_not_overridden(capsys, tmp_path):
    run = f"output_dir={tmp_path / 'run'}"
    assert cli.main(["train", "--recipe", "sst2_lora", run]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: data.path is required for dataset 'sst2'"
    )
    data = f"data.path={CORPORA['sst2'](tmp_path / 'sst')}"
    assert cli.main(["train", "--recipe", "sst2_lora", data, run]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: config key 'model.path': required (a local Hugging Face model folder)"
    )
    assert not (tmp_path / "run").exists()


def test_names_follow_the_convention():
    for name in NAMES:
        assert re.fullmatch(r"[a-z0-9]+_[a-z0-9_.]+", name), name


SMALL = recipes.small_model_names()


def test_small_model_recipes_are_not_paper_rows():
    assert SMALL and not set(SMALL) & set(NAMES)  # no target, not in the papers' tables


@pytest.mark.parametrize("name", SMALL)
def test_small_model_recipe_validates_and_says_how_it_departs_from_the_paper(name, capsys):
    config = recipes.load(name)  # the schema and every rule in rules.py
    text = recipes.path(name).read_text()
    header = text.split("\n\n")[0]
    assert f"emoscale train --recipe {name}" in header
    assert "departs from the paper recipe" in header and "one key away" in header
    if config.model.family == "fusion":
        # What issue 15 measured on EmoDB: a plain head on a small encoder trained from scratch,
        # within the protocol (15 epochs, batch 16, lr 1e-3 cosine, 5 speaker folds).
        assert (config.model.audio_method, config.model.modalities) == ("full", "audio")
        fusion = config.fusion
        assert (fusion.pooling_layers, fusion.classifier_layers) == (False, 1)
        assert (config.train.epochs, config.train.batch_size, config.train.lr) == (15, 16, 1e-3)
        assert (config.data.dataset, config.data.num_folds, config.eval.select) == (
            "emodb", 5, "last")  # fmt: skip
    else:
        assert (config.model.path, config.data.path) == (None, None)  # the user's to fill in
        # What issue 14 measured on SmolLM2-135M: LoRA on every linear projection at lr 1e-3.
        assert config.model.method == "lora" and config.lora.r == 8
        assert set(config.lora.target_modules) == {
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # fmt: skip
        assert config.train.lr == 1e-3 and config.train.batch_size * config.train.grad_accum == 16
    assert cli.main(["recipes", name]) == 0
    assert capsys.readouterr().out == text
    assert cli.main(["recipes"]) == 0
    assert any(line.startswith(f"{name} ") for line in capsys.readouterr().out.splitlines())


def test_a_small_model_recipe_trains_through_the_command_line(run_overrides, tmp_path):
    """The recipe runs as written on a tiny Llama (same projection names as SmolLM2)."""
    overrides = [o for o in run_overrides if o.split("=")[0] in ("model.path", "output_dir")]
    corpus = tmp_path / "sst"
    corpus.mkdir()
    lines = [f"{i % 2} {'a fine good film' if i % 2 else 'a dull bad film'} {i}" for i in range(24)]
    for split in ("train", "dev", "test"):
        (corpus / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n")
    argv = ["train", "--recipe", "smollm2_sst2_lora", *overrides, f"data.path={corpus}",
            "train.max_steps=2", "eval.batch_size=8"]  # fmt: skip
    assert cli.main(argv) == 0
    run_dir = next(p.parent for p in tmp_path.rglob("metrics.json"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["num_examples"] == 24
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("name", ["sst2_lora", "iemocap_fusion_lora_wavlm"])
def test_a_class_weighted_run_is_a_row_of_its_own(name):
    """train.class_weights is no paper's choice: report must not average such runs with the
    recipe's plain ones, as if they were seeds of the paper's method."""
    plain = recipes.table_row(recipes.load(name))
    balanced = recipes.table_row(recipes.load(name, ["train.class_weights=balanced"]))
    assert balanced.method == plain.method + ", class-balanced"
    assert balanced.dataset == plain.dataset
