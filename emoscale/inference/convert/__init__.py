"""Converters: checkpoints in other formats become plain model folders that emoscale (and any
Hugging Face tool) loads without running a folder's own code.

    emoscale convert chatglm SRC --out DST     # ChatGLM2-6B / ChatGLM3-6B -> transformers' GlmForCausalLM
    emoscale convert gguf FILE.gguf --out DST  # llama.cpp GGUF (dequantized) -> its transformers class

Each converter refuses, in one line naming the key, what it cannot map faithfully, writes into a
temporary folder beside DST and renames it at the end: a refused or failed conversion leaves nothing.
"""
