"""Where an EmoDB training step of the issue-15 protocol spends its time (issue 15, item 1).

    nice -n 5 python benchmarks/emodb_epoch_profile.py --json runs/bench/emodb_epoch_profile.json
    python benchmarks/emodb_epoch_profile.py --quick     # seconds: fewer repeats, 4 clips a batch

One thread. For each front end of the protocol's random 64-wide, 2-layer WavLM (emoscale.tiny's
default: 4 convolutions of 32 channels with a LayerNorm over channels after each; and `group`:
GroupNorm over time after the first only, as in the base models) it times, on a batch of 16
clips of 2.0 s at 16 kHz in train mode: forward + backward of the whole encoder, of the conv front
end alone, of each conv layer, and of the feature projection + transformer alone; then decoding
one EmoDB clip (read, 22.05 -> 16 kHz, scaled), uncached and from AudioReader's cache. Times are
process CPU seconds (time.process_time), median of `--repeats`, so another job on the machine
inflates them less than wall time; they are still for comparison within one call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_files import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emodb_side_by_side import DEFAULT_DATA  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"


def cpu_seconds(work: Callable[[], object], repeats: int) -> float:
    """Median process CPU seconds of `work` over `repeats` calls after one untimed call."""
    work()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return statistics.median(times)


def step_parts(front_end_norm: str, batch: int, repeats: int) -> dict[str, float]:
    from transformers import WavLMModel

    from emoscale.tiny.encoders import make_tiny_speech_encoder

    folder = CACHE / f"profile-wavlm-64x2-{front_end_norm}"
    if not (folder / "config.json").is_file():
        make_tiny_speech_encoder(folder, "wavlm", 64, 2, num_heads=4, front_end_norm=front_end_norm)
    model = WavLMModel.from_pretrained(folder, layerdrop=0.0).train()
    torch.manual_seed(0)
    waves = torch.randn(batch, 32_000)
    front_end = model.feature_extractor

    def whole() -> None:
        model(waves).last_hidden_state.mean().backward()

    def conv_front_end() -> None:
        front_end(waves).mean().backward()

    frames = front_end(waves).detach().transpose(1, 2)

    def transformer() -> None:
        hidden, _ = model.feature_projection(frames)
        model.encoder(hidden).last_hidden_state.mean().backward()

    parts = {
        "whole encoder": cpu_seconds(whole, repeats),
        "conv front end": cpu_seconds(conv_front_end, repeats),
        "projection + transformer": cpu_seconds(transformer, repeats),
    }
    hidden = waves[:, None]
    for index, layer in enumerate(front_end.conv_layers):
        inputs = hidden.detach().requires_grad_(index > 0)
        parts[f"conv layer {index} {tuple(inputs.shape[1:])}"] = cpu_seconds(
            lambda layer=layer, inputs=inputs: layer(inputs).mean().backward(), repeats
        )
        hidden = layer(hidden.detach())
    return parts


def decoding(data: Path, clips: int) -> dict[str, float]:
    from emoscale.data.audio import AudioReader

    files = sorted((data / "wav").glob("*.wav"))[:clips]
    reader = AudioReader(16_000, 2.0, normalize=True, cache_megabytes=512)
    results = {}
    for name in ("decode + resample, first epoch", "the same clip, later epochs (cached)"):
        started = time.process_time()
        for index, path in enumerate(files):
            reader.read(path, crop_seed=f"0:0:{index}")
        results[name] = (time.process_time() - started) / len(files)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    batch, repeats = (4, 1) if args.quick else (16, args.repeats)
    lines = [f"| part (forward + backward, batch of {batch} x 2.0 s) | layer (default) | group |"]
    lines.append("|---|---|---|")
    parts = {norm: step_parts(norm, batch, repeats) for norm in ("layer", "group")}
    for name in parts["layer"]:
        group = parts["group"].get(name)
        cells = f"{parts['layer'][name]:.3f} | {group:.3f}" if group is not None else "-"
        lines.append(f"| {name} | {cells} |")
    data = Path(args.data)
    decode = decoding(data, 20 if args.quick else 100) if (data / "wav").is_dir() else {}
    lines += [
        f"| {name}, per clip | {seconds * 1000:.2f} ms | |" for name, seconds in decode.items()
    ]
    load = os.getloadavg()
    print(
        "\n".join(lines)
        + f"\nload average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    result = {
        "benchmark": "emodb_epoch_profile",
        "table": "\n".join(lines),
        "cpu_seconds": parts,
        "decode_seconds_per_clip": decode,
        "load_average_at_end": load,
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
