"""Tiny random models and the demos: models built from configs with tokenizers trained on the spot,
so that tests and the demo need no download.

May import: emoscale.errors, emoscale.data, emoscale.config (the demos run emoscale.train).
"""
