"""The audio pipeline: mono, resampling, crops, padding masks, and one-line errors for bad files."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import soundfile
import torch

from emoscale.data.audio import (
    AudioReader,
    EpochTaggedBatches,
    check_corpus_audio,
    pad_waves,
    resolve_audio_path,
)
from emoscale.data.batching import LengthGroupedBatches
from emoscale.data.examples import Corpus, CorpusInfo, Example
from emoscale.errors import DataError

RATE = 16_000


def sine(frequency: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * math.pi * frequency * t)).astype(np.float32)


def peak_frequency(wave: torch.Tensor, rate: int = RATE) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return spectrum.argmax().item() * rate / wave.numel()


def test_stereo_is_averaged_to_mono(tmp_path):
    left = sine(440, 0.5)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, 0.5 * left], axis=1), RATE)
    wave = AudioReader(RATE, max_seconds=1.0, normalize=False).read(tmp_path / "stereo.wav")
    assert wave.shape == (8000,)
    torch.testing.assert_close(wave, torch.from_numpy(0.75 * left), atol=1e-4, rtol=0)


def test_other_sample_rates_are_resampled(tmp_path):
    soundfile.write(tmp_path / "8k.wav", sine(440, 0.5, rate=8000), 8000)
    soundfile.write(tmp_path / "44k.flac", sine(440, 0.5, rate=44_100), 44_100)
    reader = AudioReader(RATE, max_seconds=1.0, normalize=False)
    for name in ("8k.wav", "44k.flac"):
        wave = reader.read(tmp_path / name)
        assert wave.numel() == 8000  # 0.5 s at 16 kHz
        assert abs(peak_frequency(wave) - 440) <= 2  # the same tone, not a sped-up one


def test_long_clips_are_cropped_centred_in_evaluation_and_randomly_in_training(tmp_path):
    samples = np.arange(2 * RATE, dtype=np.float32) / (2 * RATE)  # a ramp: position is value
    soundfile.write(tmp_path / "long.wav", samples, RATE, subtype="FLOAT")
    reader = AudioReader(RATE, max_seconds=0.5, normalize=False)
    centred = reader.read(tmp_path / "long.wav")
    assert centred.numel() == 8000
    torch.testing.assert_close(centred, torch.from_numpy(samples[12_000:20_000]))
    crops = [reader.read(tmp_path / "long.wav", crop_seed=f"0:{epoch}:7") for epoch in range(4)]
    assert all(crop.numel() == 8000 for crop in crops)
    starts = {round(crop[0].item() * 2 * RATE) for crop in crops}
    assert len(starts) > 1  # the crop moves from epoch to epoch
    again = reader.read(tmp_path / "long.wav", crop_seed="0:0:7")
    torch.testing.assert_close(again, crops[0])  # and is a function of (seed, epoch, index) alone


def test_short_clips_keep_their_length_and_batches_carry_masks(tmp_path):
    soundfile.write(tmp_path / "short.wav", sine(440, 0.25), RATE)
    soundfile.write(tmp_path / "tiny.wav", sine(440, 0.01), RATE)
    reader = AudioReader(RATE, max_seconds=1.0, normalize=True, min_samples=400)
    short, tiny = reader.read(tmp_path / "short.wav"), reader.read(tmp_path / "tiny.wav")
    assert short.numel() == 4000
    assert tiny.numel() == 400  # 160 samples padded to the encoder's receptive field
    assert abs(short.mean().item()) < 1e-4 and abs(short.std(unbiased=False).item() - 1) < 1e-3
    values, mask = pad_waves([short, tiny])
    assert values.shape == mask.shape == (2, 4000)
    assert mask.sum(1).tolist() == [4000, 400]
    assert values[1, 400:].abs().sum() == 0


def _corpus(paths: list[str]) -> Corpus:
    examples = [
        Example(id=f"e{i}", text="words", label=0, audio_path=path) for i, path in enumerate(paths)
    ]
    info = CorpusInfo("tones", ("a",), ("A",))
    return Corpus(info, {"train": examples, "dev": [examples[0]], "test": [examples[0]]})


@pytest.fixture
def bad_files(tmp_path):
    soundfile.write(tmp_path / "good.wav", sine(440, 0.2), RATE)
    soundfile.write(tmp_path / "no_samples.wav", np.zeros(0, dtype=np.float32), RATE)
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all, just some text" * 4)
    (tmp_path / "bad_header.wav").write_bytes(b"RIFF....WAVEfmt but then nothing sensible" * 4)
    (tmp_path / "folder.wav").mkdir()  # round 6: was "audio file not found"
    return tmp_path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.wav", "audio file not found"),
        ("folder.wav", "a folder, not an audio file"),
        ("no_samples.wav", "audio file is empty (no samples)"),
        ("zero_bytes.wav", "audio file is empty (no samples)"),
        ("corrupt.wav", "not a readable audio file (format not recognised)"),
        (
            "bad_header.wav",
            "not a readable audio file (error in wav/w64/rf64 file. malformed 'fmt ' chunk)",
        ),
    ],
)
def test_a_bad_file_stops_with_one_line_naming_it(bad_files, name, message):
    corpus = _corpus(["good.wav", name])
    with pytest.raises(DataError) as raised:
        check_corpus_audio(corpus, bad_files, skip_bad=False)
    assert str(raised.value) == f"{bad_files / name}: {message}"


def test_skip_bad_audio_drops_and_counts(bad_files):
    names = ["good.wav", "missing.wav", "no_samples.wav", "zero_bytes.wav", "corrupt.wav"]
    corpus = _corpus(names)
    seconds = check_corpus_audio(corpus, bad_files, skip_bad=True)
    assert [example.audio_path for example in corpus.splits["train"]] == ["good.wav"]
    assert corpus.dropped == Counter(
        {
            "audio: audio file not found": 1,
            "audio: audio file is empty": 2,
            "audio: not a readable audio file": 1,
        }
    )
    assert seconds == {str(bad_files / "good.wav"): pytest.approx(0.2)}


def test_relative_paths_are_read_from_the_corpus_folder(tmp_path):
    assert resolve_audio_path("wav/a.wav", tmp_path) == tmp_path / "wav/a.wav"
    assert resolve_audio_path("/data/a.wav", tmp_path) == resolve_audio_path("/data/a.wav", None)


def test_training_indices_carry_their_epoch():
    batches = EpochTaggedBatches(LengthGroupedBatches([5, 3, 4, 1], batch_size=2, seed=0))
    batches.set_epoch(3)
    tagged = list(batches)
    assert len(tagged) == len(batches) == 2
    assert sorted(index for batch in tagged for index, _ in batch) == [0, 1, 2, 3]
    assert {epoch for batch in tagged for _, epoch in batch} == {3}


def test_clips_read_whole_are_decoded_once_and_long_ones_every_time(tmp_path):
    soundfile.write(tmp_path / "short.wav", sine(440, 0.5, rate=22_050), 22_050)
    soundfile.write(tmp_path / "long.wav", sine(440, 2.0, rate=22_050), 22_050)
    reader = AudioReader(RATE, max_seconds=1.0, normalize=True, cache_megabytes=1.0)
    uncached = AudioReader(RATE, max_seconds=1.0, normalize=True)
    first = reader.read(tmp_path / "short.wav", crop_seed="0:0:1")
    torch.testing.assert_close(first, uncached.read(tmp_path / "short.wav", crop_seed="0:0:1"))
    (tmp_path / "short.wav").unlink()  # a second epoch no longer touches the file
    again = reader.read(tmp_path / "short.wav", crop_seed="0:1:1")
    assert again is first
    crops = [reader.read(tmp_path / "long.wav", crop_seed=f"0:{epoch}:2") for epoch in range(3)]
    assert len({round(crop[0].item(), 6) for crop in crops}) > 1  # a random crop is drawn anew
    assert list(reader.cache) == [(str(tmp_path / "short.wav"), True)]
    assert reader.cached_bytes == 8000 * 4


def test_the_audio_cache_stays_within_its_budget(tmp_path):
    for name in ("a", "b"):
        soundfile.write(tmp_path / f"{name}.wav", sine(440, 0.5), RATE)  # 32,000 bytes decoded
    reader = AudioReader(RATE, max_seconds=1.0, normalize=False, cache_megabytes=40_000 / 2**20)
    reader.read(tmp_path / "a.wav")
    reader.read(tmp_path / "b.wav")
    assert [path for path, _ in reader.cache] == [str(tmp_path / "a.wav")]
    assert AudioReader(RATE, max_seconds=1.0, normalize=False).cache_budget == 0
