"""Audio for the speech encoders: check every file up front, then decode in DataLoader workers.

- Up front (`check_corpus_audio`, before any model loads): every file's header is read with
  `soundfile.info` (cheap). A missing, empty or unreadable file stops the run with one line naming
  it, or with `data.skip_bad_audio: true` its example is dropped and counted in `corpus.dropped`
  (run.json reports it). Files of float samples (WAV/AIFF FLOAT or DOUBLE), the only kind that can
  hold NaN or inf, are also read in full: one NaN would make every score of its batch NaN, blamed
  on the batch (issue 12). Integer PCM and FLAC cannot hold them, so those cost nothing more.
- In the workers (`AudioReader.read`, called from a Dataset's __getitem__): WAV/FLAC/... read with
  soundfile, channels averaged to mono, resampled to the encoder's rate (its feature extractor's
  `sampling_rate`), and cropped to `data.max_seconds`: at a random offset in training, centred in
  evaluation (with `data.eval_crop: false`, as in LoRA-MER, evaluation reads the whole clip).
  Only the frames kept are read, so a long recording costs what its crop costs. A clip no longer
  than the crop is the same every epoch: it is decoded once and kept in memory, up to
  `data.audio_cache_mb` per process, when clips are read in the main process
  (`train.num_workers: 0`; workers are started anew each epoch, so they keep nothing).
- `pad_waves` pads a batch to its longest clip and returns the attention mask (1 = real sample);
  nothing is padded beyond the batch, as the mask makes longer padding pointless.

Relative audio paths are taken relative to `data.path` (the corpus folder), absolute ones as given.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

from emoscale.data.examples import Corpus
from emoscale.errors import DataError


def resolve_audio_path(audio_path: str, root: str | Path | None) -> Path:
    path = Path(audio_path)
    return path if path.is_absolute() or root is None else Path(root) / path


def _reason(error: Exception) -> str:
    text = getattr(error, "error_string", None) or str(error).splitlines()[0]
    return text.strip().rstrip(".").lower()


def audio_problem(path: Path) -> tuple[str | None, float]:
    """(what is wrong, or None; duration in seconds) from the file's header alone."""
    if path.is_dir():  # was "not found": the name is there
        return "a folder, not an audio file", 0.0
    if not path.is_file():
        return "audio file not found", 0.0
    if path.stat().st_size == 0:
        return "audio file is empty (no samples)", 0.0
    try:
        info = soundfile.info(str(path))
    except (soundfile.SoundFileError, RuntimeError) as error:
        return f"not a readable audio file ({_reason(error)})", 0.0
    if info.frames == 0:
        return "audio file is empty (no samples)", 0.0
    if info.subtype in FLOAT_SUBTYPES:
        problem = _nonfinite_sample(path)
        if problem:
            return problem, 0.0
    return None, info.frames / info.samplerate


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # soundfile's names for 32/64-bit float samples
BLOCK_FRAMES = 1 << 20


def _nonfinite_sample(path: Path) -> str | None:
    """'audio samples are not finite (nan at sample N)' for the first NaN/inf sample, else None."""
    start = 0
    for block in soundfile.blocks(
        str(path), blocksize=BLOCK_FRAMES, dtype="float64", always_2d=True
    ):
        bad = ~np.isfinite(block)
        if bad.any():
            frame, channel = np.argwhere(bad)[0]
            return (
                f"audio samples are not finite ({block[frame, channel]} at sample {start + frame})"
            )
        start += len(block)
    return None


def check_corpus_audio(
    corpus: Corpus, root: str | Path | None, skip_bad: bool, keep_empty: bool = False
) -> dict[str, float]:
    """Check every example's audio header; returns {resolved path: seconds}.

    A bad file raises a one-line DataError naming it; with `skip_bad` the example is removed from
    its split instead and counted under `corpus.dropped["audio: <what is wrong>"]`. A split left
    empty is refused, unless `keep_empty` (one chunk of a streamed prediction file).
    """
    seconds: dict[str, float] = {}
    for split, examples in corpus.splits.items():
        kept = []
        for example in examples:
            if not example.audio_path:
                raise DataError(
                    f"{corpus.info.name} {split}: example {example.id!r} has no audio_path"
                )
            path = resolve_audio_path(example.audio_path, root)
            problem, duration = audio_problem(path)
            if problem is None:
                seconds[str(path)] = duration
                kept.append(example)
            elif skip_bad:
                corpus.dropped[f"audio: {problem.split(' (')[0]}"] += 1
            else:
                raise DataError(f"{path}: {problem}")
        if not kept and examples and not keep_empty:
            raise DataError(f"{corpus.info.name} {split}: no example with readable audio is left")
        corpus.splits[split] = kept
    return seconds


class AudioReader:
    """Decode one clip for the encoder: mono, resampled, cropped. Picklable, for DataLoader workers."""

    def __init__(
        self,
        sample_rate: int,
        max_seconds: float,
        normalize: bool,
        min_samples: int = 1,
        eval_crop: bool = True,
        cache_megabytes: float = 0.0,
    ):
        self.sample_rate = sample_rate
        self.max_samples = int(round(max_seconds * sample_rate))
        self.eval_crop = eval_crop  # False: evaluation (crop_seed None) reads every sample
        self.normalize = normalize  # the feature extractor's do_normalize: zero mean, unit variance
        # Shorter clips are padded with silence: the encoder needs one frame's receptive field.
        self.min_samples = min_samples
        # file rate -> its resampler: the windowed-sinc kernel is built once, not for every clip
        # (torchaudio.functional.resample rebuilds it each call: 30 vs 12 ms a 2 s EmoDB clip).
        self.resamplers: dict[int, torchaudio.transforms.Resample] = {}
        # (path, cropped) -> the decoded clip, for clips read whole (no longer than the crop, so
        # no random offset): every epoch would decode and resample them again to the same samples
        # (`data.audio_cache_mb`; main process only, see models/speech_text.py).
        self.cache: dict[tuple[str, bool], torch.Tensor] = {}
        self.cache_budget = int(cache_megabytes * 2**20)
        self.cached_bytes = 0

    def read(self, path: str | Path, crop_seed: str | None = None) -> torch.Tensor:
        """[samples] float32. `crop_seed` set: random crop (training); None: centred crop, or the
        whole clip without eval_crop."""
        crop = crop_seed is not None or self.eval_crop
        cached = self.cache.get((str(path), crop))
        if cached is not None:
            return cached
        try:
            with soundfile.SoundFile(str(path)) as handle:
                rate, frames = handle.samplerate, handle.frames
                keep = frames
                if crop:
                    keep = min(frames, math.ceil(self.max_samples * rate / self.sample_rate))
                spare = frames - keep
                offset = (
                    random.Random(crop_seed).randint(0, spare)
                    if crop_seed is not None
                    else spare // 2
                )
                handle.seek(offset)
                data = handle.read(keep, dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, RuntimeError) as error:
            raise DataError(f"{path}: not a readable audio file ({_reason(error)})") from None
        if data.shape[0] == 0:
            raise DataError(f"{path}: audio file is empty (no samples)")
        if not np.isfinite(data).all():  # written after the up-front check: still name the file
            raise DataError(f"{path}: audio samples are not finite")
        wave = torch.from_numpy(data).mean(dim=1)  # mono: the average of the channels
        if rate != self.sample_rate:
            if rate not in self.resamplers:
                self.resamplers[rate] = torchaudio.transforms.Resample(rate, self.sample_rate)
            with torch.no_grad():
                wave = self.resamplers[rate](wave)
        if crop:
            wave = wave[: self.max_samples]  # resampling can round one sample over
        if self.normalize:
            wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
        if wave.numel() < self.min_samples:
            wave = torch.nn.functional.pad(wave, (0, self.min_samples - wave.numel()))
        size = wave.numel() * wave.element_size()
        if keep == frames and self.cached_bytes + size <= self.cache_budget:
            self.cache[(str(path), crop)] = wave
            self.cached_bytes += size
        return wave


def pad_waves(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] zero-padded values, [B, T] long attention mask) for clips of different lengths."""
    width = max(wave.numel() for wave in waves)
    values = torch.zeros(len(waves), width)
    mask = torch.zeros(len(waves), width, dtype=torch.long)
    for row, wave in enumerate(waves):
        values[row, : wave.numel()] = wave
        mask[row, : wave.numel()] = 1
    return values, mask


class EpochTaggedBatches:
    """Wraps a batch sampler so every index arrives as (index, epoch).

    A worker then derives the random crop from (seed, epoch, index) alone: the same crops with any
    num_workers, on any rank, and after a resume, and no draw from the training RNG.
    """

    def __init__(self, batches):
        self.batches = batches
        self.batch_size = batches.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.batches.epoch
        return iter([[(index, epoch) for index in batch] for batch in self.batches])

    def __len__(self) -> int:
        return len(self.batches)
