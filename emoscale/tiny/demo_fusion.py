"""A speech+text demo whose label needs both modalities: tiny WavLM + tiny RoBERTa, offline, on CPU.

    python -m emoscale.tiny.demo_fusion                      # writes data and models once, then trains
    python -m emoscale.tiny.demo_fusion model.modalities=audio fusion.mine_weight=0   # an ablation

Every clip is a noisy tone, low (220 Hz) or high (880 Hz), and its transcript describes the
weather, sunny (sunny, warm, bright) or rainy (rainy, cold, grey). The emotion is the pair:
high+sunny happy, high+rainy angry, low+sunny neutral, low+rainy sad. Audio alone or text alone
can tell only two groups of two apart (at best 50% accuracy); the fused model can reach 100%.
"""

from __future__ import annotations

import csv
import math
import random
import sys
from pathlib import Path

import numpy as np
import soundfile

TONES = {"low": 220.0, "high": 880.0}
WEATHER = {"sunny": ["sunny", "warm", "bright"], "rainy": ["rainy", "cold", "grey"]}
EMOTIONS = {
    ("high", "sunny"): "happy",
    ("high", "rainy"): "angry",
    ("low", "sunny"): "neutral",
    ("low", "rainy"): "sad",
}
LABELS = ["neutral", "happy", "sad", "angry"]
PHRASES = ["it was {a} and {b}", "{a}, {b} today", "so {a} and {b}", "a {a} {b} day"]


def tone(frequency: float, seconds: float, sample_rate: int, rng: random.Random) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = rng.uniform(0.3, 0.8) * np.sin(2 * math.pi * frequency * t + rng.uniform(0, 2 * math.pi))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 0.05, t.shape)
    return (wave + noise).astype(np.float32)


def write_corpus(
    folder: Path,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    seconds: tuple[float, float] = (0.4, 0.8),
    sample_rate: int = 16_000,
) -> Path:
    """train/dev/test.csv (id, text, label, audio_path relative to `folder`) and wav/*.wav."""
    sizes = sizes or {"train": 160, "dev": 48, "test": 48}
    rng = random.Random(seed)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        rows = []
        for number in range(count):
            pitch, weather = rng.choice(list(TONES)), rng.choice(list(WEATHER))
            name = f"wav/{split}-{number:04d}.wav"
            soundfile.write(
                folder / name,
                tone(TONES[pitch], rng.uniform(*seconds), sample_rate, rng),
                sample_rate,
            )
            first, second = rng.sample(WEATHER[weather], 2)
            text = rng.choice(PHRASES).format(a=first, b=second)
            rows.append([f"{split}-{number:04d}", text, EMOTIONS[(pitch, weather)], name])
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text", "label", "audio_path"])
            writer.writerows(rows)
    return folder


def corpus_texts() -> list[str]:
    """Every sentence the corpus can hold: the text encoder's tokenizer is trained on them."""
    words = [(a, b) for group in WEATHER.values() for a in group for b in group if a != b]
    return [phrase.format(a=a, b=b) for phrase in PHRASES for a, b in words]


def prepare(root: Path | None = None, speech_arch: str = "wavlm") -> tuple[Path, Path, Path]:
    """Write the corpus and the two tiny encoders once; returns (data, speech model, text model)."""
    from emoscale.tiny.demo import cache_dir, cache_lock, write_once
    from emoscale.tiny.encoders import make_tiny_speech_encoder, make_tiny_text_encoder

    root = root or cache_dir() / "demo_fusion"
    data, speech, text = root / "data", root / f"tiny-{speech_arch}", root / "tiny-roberta"
    with cache_lock(root):  # parallel points may all start on an empty cache
        write_once(data, write_corpus)
        write_once(speech, lambda folder: make_tiny_speech_encoder(folder, arch=speech_arch))
        write_once(
            text, lambda folder: make_tiny_text_encoder(folder, corpus_texts() * 4, vocab_size=300)
        )
    return data, speech, text


def overrides(data: Path, speech: Path, text: Path) -> list[str]:
    return [
        "model.family=fusion",
        f"model.audio_path={speech}",
        f"model.text_path={text}",
        "data.dataset=csv",
        f"data.path={data}",
        f"data.labels=[{','.join(LABELS)}]",
        "data.max_seconds=1.0",
        "train.batch_size=16",
        "train.lr=1e-3",  # the paper's 3e-4 is for pretrained encoders; random tiny ones need more
        "train.epochs=8",
        "train.scheduler=cosine",
        "train.warmup_ratio=0",
        "eval.metric=accuracy",
    ]


def main(argv: list[str] | None = None) -> int:
    from emoscale import train

    argv = sys.argv[1:] if argv is None else argv
    flags = [item for item in argv if item.startswith("--")]  # --overwrite, --resume
    return train.main(flags + overrides(*prepare()) + [item for item in argv if item not in flags])


if __name__ == "__main__":
    sys.exit(main())
