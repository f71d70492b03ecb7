"""Converters that turn other model formats into plain Hugging Face model folders emoscale trains:
gguf.py (llama.cpp's GGUF files)."""
