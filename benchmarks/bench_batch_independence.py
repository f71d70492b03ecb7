"""Batch dependence of f_a before and after the per-clip front end, and its step-time cost (issue 15).

    python benchmarks/bench_batch_independence.py --json runs/bench/batch_independence.json
    python benchmarks/bench_batch_independence.py --device cuda --steps 10   # on a GPU

Base-size random encoders (the default WavLM, HuBERT and wav2vec2 configs: 12 layers, 768 wide, the
GroupNorm conv front end of wavlm-base-plus, hubert-base-ls960 and wav2vec2-base). Two measurements:

- dependence: a real 2.0 s EmoDB clip (noise if the corpus is absent) pooled alone, and padded to
  4.0 s in a batch beside a 4.0 s clip: relative change ||f_batch - f_alone|| / ||f_alone|| of the
  pooled vector (Conv1D + attentive statistics pooling, random). "before" is the old path: batched
  front end, and no attention mask where the model's feature extractor said so (HuBERT-base and
  wav2vec2-base); "after" is emoscale's path now.
- step time: forward + backward of the LoRA arm (r=2 on q/v) on a batch of `--batch` clips of
  1-8 s (IEMOCAP-like lengths, fixed seed), batched vs per-clip front end, alternated, median; and
  the same on `--batch` clips of one length (4 s: EmoDB-like), where the per-clip path takes the
  batched call (no padding, so the result is the same).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_files import SHARED_DATA, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = SHARED_DATA.parent
EMODB_CLIP = SHARED / "data" / "emodb" / "wav" / "03a01Fa.wav"
# the old path passed a mask when the extractor asked for one: wavlm-base-plus yes, the others no
OLD_MASK = {"wavlm": True, "hubert": False, "wav2vec2": False}


def encoder(arch: str, seed: int = 0):
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    from emoscale.models.speech_encoder import use_projection_modules

    config_class, model_class = {
        "wavlm": (WavLMConfig, WavLMModel),
        "hubert": (HubertConfig, HubertModel),
        "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    }[arch]
    torch.manual_seed(seed)
    model = model_class(config_class(layerdrop=0.0))
    use_projection_modules(model)
    return model


def clip_16k() -> torch.Tensor:
    if EMODB_CLIP.is_file():
        import soundfile
        import torchaudio

        data, rate = soundfile.read(EMODB_CLIP, dtype="float32")
        wave = torchaudio.functional.resample(torch.from_numpy(data), rate, 16_000)[:32_000]
    else:
        wave = torch.randn(32_000, generator=torch.Generator().manual_seed(0))
    return (wave - wave.mean()) / (wave.std() + 1e-7)


def dependence(arch: str, device: str) -> dict:
    from emoscale.models.pooling import AttentiveStatsPooling
    from emoscale.models.speech_encoder import SpeechEncoder

    model = encoder(arch)
    torch.manual_seed(1)
    pool = AttentiveStatsPooling(model.config.hidden_size, 256).to(device).eval()
    clip = clip_16k().to(device)
    other = torch.randn(64_000, generator=torch.Generator().manual_seed(2)).to(device)
    values = torch.zeros(2, 64_000, device=device)
    mask = torch.zeros(2, 64_000, dtype=torch.long, device=device)
    values[0, :32_000], mask[0, :32_000] = clip, 1
    values[1], mask[1] = other, 1
    result = {}
    for name, per_clip, masked in (("before", False, OLD_MASK[arch]), ("after", True, True)):
        speech = SpeechEncoder(
            model, "last", True, per_clip_front_end=per_clip, pass_attention_mask=masked
        )
        speech = speech.to(device).eval()
        with torch.no_grad():
            alone = pool(*speech(clip[None], mask[:1, :32_000]))[0]
            batched = pool(*speech(values, mask))[0]
        result[name] = float((batched - alone).norm() / alone.norm())
        model = encoder(arch)  # a fresh copy: the per-clip front end patches the module
    return result


def step_times(arch: str, device: str, batch: int, steps: int, equal: bool = False) -> dict:
    from peft import LoraConfig, get_peft_model

    from emoscale.data.audio import pad_waves
    from emoscale.models.pooling import AttentiveStatsPooling
    from emoscale.models.speech_encoder import SpeechEncoder

    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(16_000, 128_000, (batch,), generator=generator).tolist()
    if equal:  # one length: the per-clip front end makes the one batched call
        lengths = [64_000] * batch
    values, mask = pad_waves([torch.randn(n, generator=generator) for n in lengths])
    values, mask = values.to(device), mask.to(device)
    sides = {}
    for per_clip in (False, True):
        lora = LoraConfig(r=2, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])
        speech = SpeechEncoder(
            get_peft_model(encoder(arch), lora), "last", False, per_clip_front_end=per_clip
        )
        pool = AttentiveStatsPooling(speech.hidden_size, 256)
        sides[per_clip] = (speech.to(device).train(), pool.to(device))
    times = {False: [], True: []}
    for step in range(steps + 1):  # the first of each side warms up, not timed
        for per_clip, (speech, pool) in sides.items():
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            pool(*speech(values, mask)).sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            if step:
                times[per_clip].append(time.perf_counter() - started)
    batched, per_clip = statistics.median(times[False]), statistics.median(times[True])
    return {
        "batched_s": batched,
        "per_clip_s": per_clip,
        "ratio": per_clip / batched,
        "seconds_of_audio": sum(lengths) / 16_000,
    }


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--archs", default="wavlm,hubert,wav2vec2")
    parser.add_argument("--batch", type=int, default=4, help="clips per timed step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--parts",
        default="dependence,step,step_equal_lengths",
        help="what to measure (the step times alone: --parts step,step_equal_lengths)",
    )
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"device": args.device, "batch": args.batch, "steps": args.steps, "archs": {}}
    lines = [
        "| encoder (base size, random) | f_a change before | after | step s batched | per clip | ratio "
        "| equal lengths: batched | per clip | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in args.archs.split(","):
        parts = args.parts.split(",")
        row = {"dependence": dependence(arch, args.device)} if "dependence" in parts else {}
        if args.steps and "step" in parts:
            row["step"] = step_times(arch, args.device, args.batch, args.steps)
        if args.steps and "step_equal_lengths" in parts:
            row["step_equal_lengths"] = step_times(
                arch, args.device, args.batch, args.steps, equal=True
            )
        result["archs"][arch] = row
        print(arch, json.dumps(row), flush=True)  # each encoder as it ends
        cells = []
        for key in ("step", "step_equal_lengths"):
            step = row.get(key, {})
            nan = float("nan")
            cells.append(
                f"{step.get('batched_s', nan):.3f} | {step.get('per_clip_s', nan):.3f} | "
                f"{step.get('ratio', nan):.2f}x"
            )
        change = row.get("dependence", {"before": float("nan"), "after": float("nan")})
        lines.append(
            f"| {arch} | {change['before']:.1%} | {change['after']:.1e} | "
            + " | ".join(cells)
            + " |"
        )
    print("\n".join(lines))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
