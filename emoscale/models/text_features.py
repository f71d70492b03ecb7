"""Token features of the frozen text encoder, computed once and cached on disk.

The text encoder never trains (LoRA-MER freezes RoBERTa), so its output for a text is a constant:
compute it once, store it, and reuse it across epochs, folds and runs. One safetensors file per
distinct text:

    <cache root>/<model key>/<sha256 of the text>.safetensors     {"features": [tokens, hidden]}

The model key hashes the contents of the folder's config and tokenizer files, the name, size and
modification time of its weight files, and `data.max_length`. Re-saving the model or changing the
tokenizer gives a new key (a miss); a changed text has a new hash (a miss). Files are written to a
temporary name and renamed, so concurrent ranks or runs never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from emoscale.errors import ConfigError, EmoscaleError
from emoscale.models.model_folder import read_config_json
from emoscale.output_folder import nearest_existing, overlap_with_inputs

CACHE_FORMAT = 1  # bump when the stored layout changes
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def default_cache_root() -> Path:
    return (
        Path(os.environ.get("EMOSCALE_CACHE", Path.home() / ".cache" / "emoscale"))
        / "text_features"
    )


def check_cache_root(config) -> None:
    """fusion.text_cache_dir: a folder (or none yet) apart from every folder the run reads. The
    cache writes a folder of feature files into it: inside the corpus or an encoder's folder it
    changed an input (the encoder's model key then hashes one more entry); a file failed with a
    traceback after the speech encoder loaded."""
    if config.fusion.text_cache_dir is None:
        return
    root = Path(config.fusion.text_cache_dir).expanduser()
    what = "config key 'fusion.text_cache_dir':"
    try:  # not check_creatable: a complete cache on a read-only disk is read, not written
        existing = nearest_existing(root, what)
    except EmoscaleError as error:  # a dangling link on the way: mkdir failed with a traceback
        raise ConfigError(str(error)) from None
    if not existing.is_dir():
        where = "is a file" if existing == root else f"is inside {existing}, which is a file"
        raise ConfigError(f"{what} {root} {where}, not a folder")
    inputs = {
        key: getattr(getattr(config, key.split(".")[0]), key.split(".")[1])
        for key in ("data.path", "model.path", "model.audio_path", "model.text_path")
    }
    # the cache writes only into root/<hash>/: a root that holds the corpus (a project folder)
    # harms nothing; a root that is, or is inside, an input folder writes into it
    found = overlap_with_inputs(root, inputs, contains=False)
    if found:
        relation, key, value = found
        raise ConfigError(
            f"config key 'fusion.text_cache_dir': {root} {relation} {key} {value}; "
            "the cache must be apart from the folders the run reads"
        )


def model_key(folder: Path, max_length: int) -> str:
    """A hash that changes whenever the model, its tokenizer or the truncation length changes."""
    digest = hashlib.sha256(f"format={CACHE_FORMAT} max_length={max_length}\n".encode())
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(WEIGHT_SUFFIXES):  # hashing gigabytes would cost more than it saves
            stat = path.stat()
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        else:  # config.json, tokenizer files: small, hashed whole
            digest.update(path.name.encode() + b"\n" + path.read_bytes())
    return digest.hexdigest()[:24]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextFeatureCache:
    """Maps texts to cached feature files, running the encoder only for texts not cached yet."""

    def __init__(
        self,
        model_folder: str | Path,
        max_length: int,
        root: str | Path | None = None,
        batch_size: int = 32,
    ):
        self.model_folder = Path(model_folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self.folder = Path(root or default_cache_root()) / model_key(self.model_folder, max_length)
        self.hidden_size = read_config_json(self.model_folder, "model.text_path")["hidden_size"]
        self.forward_passes = 0  # encoder calls made by this object: 0 when everything was cached
        self.encoded_texts = 0

    def path(self, text: str) -> Path:
        return self.folder / f"{text_hash(text)}.safetensors"

    def ensure(self, texts: Sequence[str], device: str | torch.device = "cpu") -> list[Path]:
        """The feature file of every text, encoding the missing ones first."""
        # Longest first, so batches hold texts of similar length (little padding to encode) and a
        # batch too large for memory fails at once.
        missing = sorted(
            {text for text in texts if not self.path(text).is_file()}, key=lambda t: (-len(t), t)
        )
        if missing:
            self._encode(missing, device)
        return [self.path(text) for text in texts]

    @torch.no_grad()
    def _encode(self, texts: list[str], device) -> None:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_folder)
        encoder = AutoModel.from_pretrained(self.model_folder).to(device).eval()
        self.folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            full_lengths = [len(ids) for ids in tokenizer(chunk)["input_ids"]]
            tokens = tokenizer(
                chunk,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = encoder(**tokens.to(device)).last_hidden_state.float().cpu()
            self.forward_passes += 1
            for row, text in enumerate(chunk):
                length = int(tokens["attention_mask"][row].sum())
                metadata = {"truncated": str(int(full_lengths[row] > length))}
                target = self.path(text)
                # host and pid: two nodes sharing the cache folder may run the same pid
                temporary = target.with_name(
                    f".{target.name}.{socket.gethostname()}.{os.getpid()}.tmp"
                )
                save_file(
                    {"features": hidden[row, :length].contiguous()},
                    str(temporary),
                    metadata=metadata,
                )
                os.replace(temporary, target)
            self.encoded_texts += len(chunk)
        del encoder

    @staticmethod
    def truncated(path: Path) -> bool:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata().get("truncated") == "1"

    @staticmethod
    def load(path: str | Path) -> torch.Tensor:
        """[tokens, hidden] float32."""
        return load_file(str(path))["features"]
