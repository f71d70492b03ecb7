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
from emoscale.evaluation.metrics import HEADLINE  # noqa: E402
from emoscale.studies import recipes  # noqa: E402

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
    assert "target:" in text
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
    targets = recipes.targets()
    assert sorted(targets) == NAMES
    for name, target in targets.items():
        metrics = {key: value for key, value in target.items() if key != "source"}
        assert set(metrics) <= set(HEADLINE) and metrics, name
        # A number or null (not copied from the paper yet): never anything else.
        assert all(value is None or isinstance(value, float) for value in metrics.values()), name
        assert isinstance(target["source"], str) and target["source"], name
    assert rows["mosi3_lora"] == ("prompt_lm", "MOSI-3", "LoRA")
    assert rows["iemocap_fusion_lora_wavlm_lambda0.5"] == (
        "fusion",
        "IEMOCAP",
        "WavLM LoRA + RoBERTa frozen, λ=0.5",
    )
    assert yaml.safe_load(recipes.TARGETS_FILE.read_text())["sst2_lora"]["accuracy"] is None


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
