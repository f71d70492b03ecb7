"""Shared fixtures: a tiny random LLM and a small learnable corpus, made once per test session."""

from __future__ import annotations

import os
import warnings

import pytest

from emoscale import demo
from emoscale.tiny import make_tiny

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
warnings.filterwarnings(
    "ignore", message=".*MatMul8bitLt.*"
)  # bitsandbytes on CPU warns per matmul


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """train/dev/test CSVs (480/96/96) of the demo's three-way sentiment task."""
    return demo.write_corpus(tmp_path_factory.mktemp("demo_corpus"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    texts = [text for text, _ in demo.sentences(2000, seed=99)]
    texts += [
        f"Classify the sentiment of the sentence to Positive, Negative or Neutral: {t}"
        for t in texts[:200]
    ]
    return make_tiny(tmp_path_factory.mktemp("tiny_llama"), texts, arch="llama", vocab_size=600)


@pytest.fixture
def run_overrides(tiny_llama, demo_corpus, tmp_path):
    """The demo's config on the session's tiny model and corpus, writing into tmp_path/run."""
    return demo.overrides(demo_corpus, tiny_llama) + [f"output_dir={tmp_path / 'run'}"]
