"""Corpora: one module per corpus, each returning a `Corpus` (see examples.py and registry.py)."""

from emoscale.data.examples import Corpus, CorpusInfo, Example
from emoscale.data.registry import CORPORA, load_corpus

__all__ = ["CORPORA", "Corpus", "CorpusInfo", "Example", "load_corpus"]
