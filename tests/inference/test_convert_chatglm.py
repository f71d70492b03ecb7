"""`emoscale convert chatglm`: a ChatGLM2 checkpoint in its real on-disk format becomes a
GlmForCausalLM folder with the same logits, a tokenizer with SentencePiece's ids, and emoscale trains
LoRA and P-Tuning v2 on it. Bad folders: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from chatglm_checkpoint import (
    chinese,
    english,
    mixed,
    reference_logits,
    train_sentencepiece,
    write_checkpoint,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from emoscale import cli, train
from emoscale.config import load_config
from emoscale.inference.convert.chatglm import convert
from emoscale.tiny import demo


@pytest.fixture(scope="module")
def chatglm2(tmp_path_factory):
    """(source folder, its config, its weights, the converted folder)."""
    root = tmp_path_factory.mktemp("chatglm2")
    src, config, weights = write_checkpoint(
        root / "chatglm2-6b", english(2000, seed=99) + chinese(1500, seed=1)
    )
    return src, config, weights, convert(src, root / "converted")


def test_converted_folder_is_plain_glm(chatglm2):
    src, _, _, out = chatglm2
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "glm" and "auto_map" not in config
    assert config["rope_parameters"]["partial_rotary_factor"] == 0.5
    assert not list(out.glob("*.py")) and not list(out.glob("*.bin"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2  # one safetensors shard per .bin shard
    assert "model.layers.1.self_attn.k_proj.bias" in index["weight_map"]
    assert not any("inv_freq" in key for key in index["weight_map"])
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 2


@pytest.mark.parametrize("padded", [False, True])
def test_logits_match_the_chatglm2_forward(chatglm2, padded):
    _, config, weights, out = chatglm2
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = ["The movie was wonderful.", "一二丁 😀 the plot was dull, 七万"]
    if not padded:
        texts = texts[1:]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    # the remote code's positions (0.. including pads) and emoscale's (counted from the mask)
    for positions in (torch.arange(ids.shape[1]).expand(len(texts), -1), mask.cumsum(-1) - 1):
        positions = positions.clamp(min=0)
        with torch.no_grad():
            expected = reference_logits(weights, config, ids, mask, positions)
            got = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        real = mask.bool()  # pad rows are garbage in both, differently
        assert (expected - got)[real].abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "options",
    [{}, {"normalization_rule_name": "identity", "remove_extra_whitespaces": False}],
    ids=["nmt_nfkc", "identity"],
)
def test_tokenizer_ids_are_sentencepiece_ids_after_the_prefix(chatglm2, tmp_path, options):
    src, *_ = chatglm2
    texts = english(1500, seed=3) + chinese(1500, seed=4) + mixed(1500, seed=5)
    texts += ["", " ", "  leading", "trailing  ", "\n\nx", "people", "ｆｕｌｌ①", "a\u3000b"]
    folder = tmp_path / "src"
    shutil.copytree(src, folder)
    train_sentencepiece(
        english(1500, seed=99) + chinese(1500, seed=1), folder / "tokenizer.model", **options
    )
    out = convert(folder, tmp_path / "out")
    pieces = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    tokenizer = AutoTokenizer.from_pretrained(out)
    prefix = tokenizer.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    assert prefix == [pieces.vocab_size() + 1, pieces.vocab_size() + 3]
    got = tokenizer(texts)["input_ids"]
    mismatched = [t for t, ids in zip(texts, got, strict=True) if ids != prefix + pieces.encode(t)]
    assert mismatched == [] and len(texts) > 4000
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id == 0
    assert tokenizer.eos_token_id == 2 and tokenizer.bos_token_id is None
    # the prompt template's word pieces decode back (no `sop`/`eop` inside words)
    assert tokenizer.decode(tokenizer("people")["input_ids"], skip_special_tokens=True) == "people"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "ptuning_v2"])
def test_emoscale_trains_and_scores_on_the_converted_folder(
    chatglm2, demo_corpus, tmp_path, method
):
    *_, out = chatglm2
    overrides = demo.overrides(demo_corpus, out) + [
        f"output_dir={tmp_path / 'run'}",
        "train.max_steps=30",
        "train.log_every_steps=5",
        "eval.every_steps=30",
    ]
    if method == "lora":  # GLM's module names: gate and up are one layer
        overrides.append("lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_up_proj,down_proj]")
    else:
        overrides += ["model.method=ptuning_v2", "ptuning.num_virtual_tokens=8", "train.lr=3e-2"]
    run_dir, metrics = train.run(load_config(overrides=overrides))
    losses = [
        row["train_loss"]
        for row in map(json.loads, (run_dir / "history.jsonl").read_text().splitlines())
        if "train_loss" in row
    ]
    assert losses[-1] < 0.9 * losses[0], losses  # it learned (30 steps of a random tiny model)
    assert metrics["test"]["num_examples"] == 96  # and scored every test sentence


# --- refusals: one line, exit 2, nothing at --out ----------------------------------------------


def _broken(src, tmp_path, change) -> str:
    folder = tmp_path / "src"
    shutil.copytree(src, folder)
    config = json.loads((folder / "config.json").read_text())
    change(folder, config)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


REFUSALS = {
    "missing shard": (
        lambda folder, config: (folder / "pytorch_model-00002-of-00002.bin").unlink(),
        "pytorch_model.bin.index.json: shard pytorch_model-00002-of-00002.bin is missing "
        "(1 of 2 missing; download every shard)",
    ),
    "quantized": (
        lambda folder, config: config.update(quantization_bit=4),
        "config.json: quantization_bit is 4: a quantized checkpoint; convert the full-precision "
        "one (load_in_8bit/4bit quantizes after conversion)",
    ),
    "model_type": (
        lambda folder, config: config.update(model_type="chatglm6b"),
        "config.json: model_type is 'chatglm6b', expected 'chatglm'",
    ),
    "rope_ratio": (
        lambda folder, config: config.update(rope_ratio=16),
        "config.json: rope_ratio is 16: it divides the positions in ChatGLM2-6B-32k but multiplies "
        "the rotary base in ChatGLM3-6B-32k; only the 6B models without it are converted",
    ),
    "prefix encoder": (
        lambda folder, config: config.update(pre_seq_len=128),
        "config.json: pre_seq_len is 128: a P-Tuning v2 prefix encoder is not part of GLM; convert "
        "the base model and train ptuning_v2 in emoscale",
    ),
    "layernorm": (
        lambda folder, config: config.update(rmsnorm=False),
        "config.json: rmsnorm is False, expected True (ChatGLM2's)",
    ),
    "bias": (
        lambda folder, config: config.update(add_bias_linear=True),
        "config.json: add_bias_linear is True, expected False (ChatGLM2's)",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_source_folder_is_refused_in_one_line(chatglm2, tmp_path, capsys, case):
    change, message = REFUSALS[case]
    folder = _broken(chatglm2[0], tmp_path, change)
    out = tmp_path / "models" / "converted"
    assert cli.main(["convert", "chatglm", folder, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: convert chatglm: {folder}/")
    assert err.endswith(message + "\n"), err
    assert not out.exists() and not any((tmp_path / "models").glob(".*"))


def test_prefix_encoder_weights_are_refused(chatglm2, tmp_path, capsys):
    def add_prefix_encoder(folder, config):
        index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
        index["weight_map"]["transformer.prefix_encoder.embedding.weight"] = "prefix.bin"
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))

    folder = _broken(chatglm2[0], tmp_path, add_prefix_encoder)
    out = tmp_path / "converted"
    assert cli.main(["convert", "chatglm", folder, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: convert chatglm: {folder}/pytorch_model.bin.index.json: weight "
        "transformer.prefix_encoder.embedding.weight: a P-Tuning v2 prefix encoder is not part of "
        "GLM; convert the base model and train ptuning_v2 in emoscale\n"
    )
    assert not out.exists()


def test_unreadable_or_incomplete_shards_are_refused_after_cleaning_up(chatglm2, tmp_path, capsys):
    src, _, weights, _ = chatglm2
    folder = tmp_path / "src"
    shutil.copytree(src, folder)
    shard = folder / "pytorch_model-00002-of-00002.bin"
    shard.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    out = tmp_path / "models" / "glm" / "converted"  # its parents are made, then removed again
    assert cli.main(["convert", "chatglm", str(folder), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: convert chatglm: {shard} is a git-lfs pointer, not weights (run `git lfs pull`)\n"
    )
    # a shard without one tensor the index does not list either: found while converting
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    kept = {k: v for k, v in weights.items() if index["weight_map"][k] == shard.name}
    dropped = "transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"
    assert kept.pop(dropped) is not None
    torch.save(kept, shard)
    del index["weight_map"][dropped]
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert cli.main(["convert", "chatglm", str(folder), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: convert chatglm: {folder}: weight for model.layers.1.mlp.down_proj.weight is missing\n"
    )
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]  # temp folder gone


DAMAGED_JSON = {
    "config not JSON": (
        "config.json",
        '{"model_type": "chatglm",',
        "config.json:1:26: not valid JSON (Expecting property name enclosed in double quotes)",
    ),
    "config not an object": (
        "config.json",
        "[1, 2]",
        "config.json: expected a JSON object, got list",
    ),
    "index not JSON": (
        "pytorch_model.bin.index.json",
        '{"weight_map": {"a": ',
        "pytorch_model.bin.index.json:1:22: not valid JSON (Expecting value)",
    ),
    "index without weight_map": (
        "pytorch_model.bin.index.json",
        '{"metadata": {"total_size": 1}}',
        "pytorch_model.bin.index.json: no weight_map "
        "(expected an object of weight name -> shard file)",
    ),
    "weight_map a list": (
        "pytorch_model.bin.index.json",
        '{"weight_map": ["pytorch_model-00001-of-00002.bin"]}',
        "pytorch_model.bin.index.json: no weight_map "
        "(expected an object of weight name -> shard file)",
    ),
    "shard not a name": (
        "pytorch_model.bin.index.json",
        '{"weight_map": {"transformer.encoder.final_layernorm.weight": 2}}',
        "pytorch_model.bin.index.json: weight transformer.encoder.final_layernorm.weight: "
        "shard 2, expected a file name",
    ),
}


@pytest.mark.parametrize("case", DAMAGED_JSON)
def test_damaged_config_or_index_is_one_line_and_writes_nothing(chatglm2, tmp_path, capsys, case):
    """A cut download or an HTML error page saved as JSON: no traceback (exit 1), no folder."""
    name, text, message = DAMAGED_JSON[case]
    folder = tmp_path / "src"
    shutil.copytree(chatglm2[0], folder)
    (folder / name).write_text(text)
    out = tmp_path / "models" / "converted"
    assert cli.main(["convert", "chatglm", str(folder), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: convert chatglm: {folder}/{message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_chatglm3_role_tokens_follow_its_tokenization_code(chatglm2, tmp_path):
    folder = tmp_path / "src"
    shutil.copytree(chatglm2[0], folder)
    # ChatGLM3's tokenization_chatglm.py lists the role tokens; the converter reads, never runs it
    (folder / "tokenization_chatglm.py").write_text(
        'roles = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]\n'
    )
    tokenizer = AutoTokenizer.from_pretrained(convert(folder, tmp_path / "out"))
    pieces = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).vocab_size()
    assert tokenizer.convert_tokens_to_ids(["<eop>", "<|user|>", "<|observation|>"]) == [
        pieces + 4,
        pieces + 6,
        pieces + 8,
    ]
    assert tokenizer("<|user|>", add_special_tokens=False)[
        "input_ids"
    ] == spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).encode(
        "<|user|>"
    )  # text in a sentence, not the role token


def test_existing_output_is_never_overwritten(chatglm2, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert cli.main(["convert", "chatglm", str(chatglm2[0]), "--out", str(out)]) == 2
    assert (
        capsys.readouterr().err == f"error: convert chatglm: --out {out} exists and is not empty\n"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_output_inside_the_source_folder_is_refused(chatglm2, tmp_path, capsys):
    """The download is an input: --out inside it would write a model folder into it."""
    src = chatglm2[0]
    before = sorted(p.name for p in Path(src).iterdir())
    out = Path(src) / "glm"
    assert cli.main(["convert", "chatglm", str(src), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: convert chatglm: --out {out} is inside the source folder {src}; write it apart\n"
    )
    assert sorted(p.name for p in Path(src).iterdir()) == before


def test_help_has_an_example(capsys):
    assert cli.main(["convert", "chatglm", "--help"]) == 0
    assert "emoscale convert chatglm models/chatglm2-6b-download --out" in capsys.readouterr().out
