"""`emoscale convert gguf`: a GGUF file written here with the `gguf` package (llama.cpp's own
writer: its tensor names, its q/k permutation, one Q8_0-quantized tensor) becomes a model folder
that reloads with the same weights, tokenizer, chat template and logits."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emoscale.cli import main

CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}</s>"
    "{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
QUANTIZED = "blk.0.ffn_down.weight"  # written as Q8_0: the converter must dequantize it


def llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf reorders q/k rows for its rotary layout."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(folder, path, architecture="llama", quantized=gguf.GGMLQuantizationType.Q8_0):
    """The tiny Llama in `folder` as llama.cpp would write it."""
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if token in special else 1 for token, _ in vocab])  # 3: control
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}  # fmt: skip
    for name, tensor in model.state_dict().items():
        data = tensor.float().numpy()
        if name not in names:
            layer, part = name.removeprefix("model.layers.").split(".", 1)
            part, suffix = part.rsplit(".", 1)
            names[name] = f"blk.{layer}.{parts[part]}.{suffix}"
            if part == "self_attn.q_proj":
                data = llama_cpp_permute(data, config.num_attention_heads)
            elif part == "self_attn.k_proj":
                data = llama_cpp_permute(data, config.num_key_value_heads)
        if names[name] == QUANTIZED:
            if quantized == gguf.GGMLQuantizationType.Q8_0:
                writer.add_tensor(
                    names[name], gguf.quants.quantize(data, quantized), raw_dtype=quantized
                )
            else:  # bytes of the right size in a type that has no dequantizer
                block, size = gguf.GGML_QUANT_SIZES[quantized]
                raw = np.zeros((data.shape[0], data.shape[1] // block * size), np.uint8)
                writer.add_tensor(names[name], raw, raw_dtype=quantized)
        else:
            writer.add_tensor(names[name], data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_file_becomes_a_model_folder_with_the_same_model(tiny_llama, tmp_path):
    gguf_file = write_gguf(tiny_llama, tmp_path / "tiny.Q8_0.gguf")
    out = tmp_path / "converted"
    assert main(["convert", "gguf", str(gguf_file), "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in saved and saved["model_type"] == "llama"

    original = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    converted = AutoModelForCausalLM.from_pretrained(out).eval()
    expected = original.state_dict()
    down = expected["model.layers.0.mlp.down_proj.weight"].numpy()
    q8 = gguf.GGMLQuantizationType.Q8_0
    expected["model.layers.0.mlp.down_proj.weight"] = torch.from_numpy(
        gguf.quants.dequantize(gguf.quants.quantize(down, q8), q8)
    )
    for name, tensor in converted.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], atol=0, rtol=0, msg=name)
    assert (converted.state_dict()[name] - original.state_dict()[name]).abs().max() < 0.05

    tokenizer, reference = (
        AutoTokenizer.from_pretrained(out),
        AutoTokenizer.from_pretrained(tiny_llama),
    )
    text = "Classify the sentiment of the sentence to Positive or Negative: a fine film"
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.eos_token == "</s>" and tokenizer.bos_token == "<s>"

    # The folder's logits are the GGUF file's, as transformers itself loads it.
    direct = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf_file.name).eval()
    ids = torch.tensor([reference(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, direct(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["architecture", "quantization", "not_gguf", "out_exists"])
def test_unsupported_gguf_files_end_in_one_line(tiny_llama, tmp_path, capsys, case):
    gguf_file, out = tmp_path / "model.gguf", tmp_path / "out"
    if case == "architecture":
        write_gguf(tiny_llama, gguf_file, architecture="rwkv9")
        expected = f"error: {gguf_file}: GGUF architecture 'rwkv9' is not supported by transformers; supported: "
    elif case == "quantization":
        write_gguf(tiny_llama, gguf_file, quantized=gguf.GGMLQuantizationType.Q8_K)
        expected = f"error: {gguf_file}: quantisation Q8_K cannot be dequantized by the installed gguf package; readable: "
    elif case == "not_gguf":
        gguf_file.write_text("not a gguf file\n")
        expected = f"error: {gguf_file} is not a readable GGUF file ("
    else:
        write_gguf(tiny_llama, gguf_file)
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
        expected = f"error: --out {out} already exists and is not an empty folder"
    capsys.readouterr()  # loading the tiny model above wrote a progress bar
    assert main(["convert", "gguf", str(gguf_file), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(expected) and error.count("\n") == 1, error
    assert not (tmp_path / ".out.partial").exists()
    if case == "out_exists":
        assert (out / "mine.txt").read_text() == "keep me"
    else:
        assert not out.exists()
