"""A GGUF file (llama.cpp's format) as a plain Hugging Face model folder that emoscale trains.

    emoscale convert gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m-instruct

transformers reads GGUF itself (`from_pretrained(folder, gguf_file=...)`): weights dequantized,
config, tokenizer and chat template rebuilt from the file's metadata. This module checks the file
first (architecture and tensor types transformers and the `gguf` package can read), so that an
unsupported file ends in one line before anything heavy runs, then saves the model in the dtype
asked for, without the `quantization_config` that would make every later load look for the GGUF
file again. The folder is written beside `out` and renamed at the end: nothing half-written.
"""

from __future__ import annotations

from pathlib import Path

import torch

from emoscale.errors import EmoscaleError
from emoscale.output_folder import new_folder, refuse_existing

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
UNQUANTIZED = ("F32", "F16", "F64", "I8", "I16", "I32", "I64")


def read_gguf(gguf_file: Path):
    """GGUFReader over the file, or one line saying it is not a GGUF file."""
    from gguf import GGUFReader

    try:
        return GGUFReader(gguf_file)
    except (ValueError, OSError, IndexError) as error:  # bad magic, truncated file
        raise EmoscaleError(f"{gguf_file} is not a readable GGUF file ({error})") from None


def check_gguf(gguf_file: Path) -> str:
    """The file's architecture, after checking transformers can load it and every tensor type
    can be dequantized; else one line naming what is not supported."""
    from gguf.quants import _type_traits
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    reader = read_gguf(gguf_file)
    field = reader.fields.get("general.architecture")
    if field is None:
        raise EmoscaleError(f"{gguf_file}: no general.architecture in its metadata")
    architecture = bytes(field.parts[field.data[0]]).decode()
    # The mapping also holds the "general" and "tokenizer" metadata groups: not architectures.
    supported = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}
    if architecture not in supported:
        raise EmoscaleError(
            f"{gguf_file}: GGUF architecture {architecture!r} is not supported by transformers; "
            f"supported: {', '.join(sorted(supported))}"
        )
    readable = set(UNQUANTIZED) | {kind.name for kind in _type_traits}
    unreadable = sorted({t.tensor_type.name for t in reader.tensors} - readable)
    if unreadable:
        raise EmoscaleError(
            f"{gguf_file}: quantisation {', '.join(unreadable)} cannot be dequantized by the "
            f"installed gguf package; readable: {', '.join(sorted(readable))}"
        )
    return architecture


def convert_gguf(gguf_file: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    """Write `gguf_file` as a model folder at `out` (config, safetensors, tokenizer with its chat
    template, generation config); returns `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, out = Path(gguf_file), Path(out)
    if not gguf_file.is_file():
        raise EmoscaleError(f"GGUF file {gguf_file} does not exist")
    if dtype not in DTYPES:
        raise EmoscaleError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # never overwrite anything
        raise EmoscaleError(f"--out {out} already exists and is not an empty folder")
    refuse_existing(out, "--out")  # a symbolic link, a path below a file: before the load
    check_gguf(gguf_file)

    folder, name = str(gguf_file.parent), gguf_file.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # transformers refuses to save a model loaded from GGUF, and its config's quantization_config
    # would send every later load back to the GGUF file: the dequantized weights go into a plain
    # model of the same config (built on the meta device: no second random initialisation).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    # A fresh temporary folder beside `out`, renamed at the end (output_folder.py): never a fixed
    # name that a user's folder could hold.
    with new_folder(out, "--out") as work:
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
    return out
