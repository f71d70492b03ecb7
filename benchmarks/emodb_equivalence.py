"""Is emoscale's training path a plain loop? (issue 15, item 3, step 1: deterministic, seconds)

    python benchmarks/emodb_equivalence.py --fold 3 --seed 42 --json runs/bench/emodb_equivalence.json
    python benchmarks/emodb_equivalence.py --keys train.warmup_ratio=0.1 train.max_grad_norm=1.0

One optimiser step of `emoscale train` (the protocol's keys, `train.max_steps=1`, the trainer,
its DataLoader and Accelerate) is replayed by a hand loop: a plain `WavLMModel` loaded with the
same starting weights, the same head modules, the same batch and the same torch/numpy random
state (captured when the trainer's family computes its loss), F.cross_entropy, backward, an
AdamW step at the trainer's first learning rate (clipped as the trainer clips). It prints the
largest differences of the loss, every gradient and every weight after the step, and checks
what the trainer adds around the model: which modules train (dropout, SpecAugment), the wave
against the minimal loop's own decoding, the first learning rates, and the test predictions of
the saved model against a hand evaluation (eval mode, same waves).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_files import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emodb_side_by_side import (  # noqa: E402
    DEFAULT_DATA,
    encoder_folder,
    model_and_schedule_keys,
    synthetic_emodb,
)

CACHE = Path(tempfile.gettempdir()) / "emoscale-bench"


def minimal_wave(path: Path) -> torch.Tensor:
    """The minimal loop's decoding (emodb_side_by_side.run_minimal_fold)."""
    import soundfile
    import torchaudio

    data, rate = soundfile.read(path, dtype="float32")
    wave = torchaudio.functional.resample(torch.from_numpy(data), rate, 16_000)[:32_000]
    return (wave - wave.mean()) / (wave.std() + 1e-7)


def capture_first_step(config) -> dict:
    """Run `emoscale train` for one step; keep what its loss saw and its gradients."""
    from emoscale import train
    from emoscale.models import speech_text

    seen: dict = {}
    family_loss = speech_text.SpeechTextFamily.loss
    adamw_step = torch.optim.AdamW.step

    def loss(self, model, batch, terms=None):
        if "batch" not in seen:
            seen["batch"] = {k: v.clone() for k, v in batch.items()}
            seen["weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            seen["torch_rng"] = torch.get_rng_state()
            seen["numpy_rng"] = np.random.get_state()
            seen["training"] = {
                name: module.training for name, module in model.named_modules() if name
            }
            seen["loss"] = family_loss(self, model, batch, terms)
            return seen["loss"]
        return family_loss(self, model, batch, terms)

    def step(self, *args, **kwargs):
        if "grads" not in seen:
            seen["lr"] = self.param_groups[0]["lr"]
            seen["grads"] = [
                None if p.grad is None else p.grad.detach().clone()
                for group in self.param_groups
                for p in group["params"]
            ]
        return adamw_step(self, *args, **kwargs)

    speech_text.SpeechTextFamily.loss = loss
    torch.optim.AdamW.step = step
    try:
        run_dir, metrics = train.run(config, overwrite=True)
    finally:
        speech_text.SpeechTextFamily.loss = family_loss
        torch.optim.AdamW.step = adamw_step
    seen["run_dir"], seen["metrics"] = run_dir, metrics
    return seen


class HandModel(torch.nn.Module):
    """A plain WavLMModel (no emoscale wrapper, no mask) and copies of emoscale's head modules."""

    def __init__(self, encoder_path: Path, pool: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        from transformers import WavLMModel

        self.encoder = WavLMModel.from_pretrained(encoder_path, layerdrop=0.0)
        self.pool, self.head = pool, head

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(waves).last_hidden_state  # equal-length clips: no mask needed
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool)
        return self.head(self.pool(hidden, mask))


# SpeechTextModel's parameter names -> HandModel's
NAMES = {"speech.encoder.": "encoder.", "audio_pool.": "pool.", "classifier.": "head."}


def hand_name(name: str) -> str | None:
    ours = next((prefix for prefix in NAMES if name.startswith(prefix)), None)
    return None if ours is None else NAMES[ours] + name.removeprefix(ours)


def hand_model(config, weights: dict) -> HandModel:
    """The hand loop's model with the trainer's starting weights (SpeechTextModel's names)."""
    from emoscale.models.fusion import classifier
    from emoscale.models.pooling import AttentiveStatsPooling

    fusion = config.fusion
    encoder = Path(config.model.audio_path)
    width = json.loads((encoder / "config.json").read_text())["hidden_size"]
    attentive, layers = fusion.pooling == "attentive", fusion.pooling_layers
    pool = AttentiveStatsPooling(width, fusion.dim, attentive=attentive, layers=layers)
    head = classifier(
        pool.output_dim, fusion.classifier_hidden, 7, fusion.dropout, fusion.classifier_layers
    )
    model = HandModel(encoder, pool, head)
    renamed = {hand_name(name): value for name, value in weights.items() if hand_name(name)}
    model.load_state_dict(renamed, strict=True)
    return model


def largest(a: dict, b: dict) -> tuple[float, str]:
    worst = max(((float((a[k] - b[k]).abs().max()), k) for k in a), default=(0.0, ""))
    return worst


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--fold", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keys", nargs="*", default=[], help="extra emoscale keys")
    parser.add_argument(
        "--hand-projection-modules",
        action="store_true",
        help="the hand loop's WavLM attention also calls its q/k/v modules (emoscale's patch)",
    )
    parser.add_argument("--json")
    parser.add_argument("--cache-dir", default=str(CACHE), help="the random encoder is kept here")
    parser.add_argument("--quick", action="store_true", help="generated tones, 16x1 encoder")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    from safetensors.torch import load_file

    from emoscale.config import load_config
    from emoscale.data import load_corpus

    hidden, layers = (16, 1) if args.quick else (64, 2)
    if args.quick:
        args.data, args.fold = str(synthetic_emodb(Path(args.cache_dir) / "quick-emodb")), 0
    encoder = encoder_folder(args.cache_dir, hidden, layers, front_end_norm="group")
    out = Path(args.cache_dir) / "equivalence"
    keys = [
        *model_and_schedule_keys(args.data, encoder, 1e-3, 15),
        "eval.select=last",
        "data.train_on_dev=true",
        f"data.fold={args.fold}",
        f"seed={args.seed}",
        f"output_dir={out}",
        "train.max_steps=1",
        *args.keys,
    ]
    config = load_config(overrides=keys)
    seen = capture_first_step(config)
    report: dict = {"keys": keys}

    # what trains: every module of emoscale's model in training mode at the first loss?
    report["modules_not_training"] = [n for n, on in seen["training"].items() if not on]

    # the wave: the trainer's batch vs the minimal loop's own decoding of the same files
    corpus = load_corpus(config.data)
    train_split = corpus.split("train")
    rows = seen["batch"]["example_index"].tolist()
    waves = seen["batch"]["input_values"]
    own = torch.stack([minimal_wave(Path(args.data) / train_split[i].audio_path) for i in rows])
    report["wave_max_abs_diff_vs_minimal_decoding"] = float((own - waves).abs().max())
    report["audio_mask_all_ones"] = bool(seen["batch"]["audio_mask"].all())

    # the same step by hand: same weights, batch, random state
    model = hand_model(config, seen["weights"])
    if args.hand_projection_modules:
        from emoscale.models.speech_encoder import use_projection_modules

        use_projection_modules(model.encoder)
    model.train()
    if config.fusion.encoder_augmentation == "never":
        model.encoder.eval()
    torch.set_rng_state(seen["torch_rng"])
    np.random.set_state(seen["numpy_rng"])
    loss = torch.nn.functional.cross_entropy(model(waves), seen["batch"]["labels"])
    loss.backward()
    report["grad_norm"] = float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())
    if config.train.max_grad_norm:  # the trainer's gradients are captured at its step: clipped
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.max_grad_norm)
    report["loss_trainer"], report["loss_hand"] = float(seen["loss"].detach()), float(loss.detach())
    # gradients: the trainer's by parameter order of SpeechTextModel (same order as HandModel's)
    trainer_grads = [g if g is not None else torch.zeros(()) for g in seen["grads"]]
    hand_grads = [p.grad if p.grad is not None else torch.zeros(()) for p in model.parameters()]
    report["parameters"] = [len(trainer_grads), len(hand_grads)]
    report["grad_max_abs_diff"] = max(
        float((a - b).abs().max()) for a, b in zip(trainer_grads, hand_grads, strict=True)
    )
    names = [n for n, _ in model.named_parameters()]
    relative = [
        (float((a - b).norm() / (b.norm() + 1e-12)), name)
        for a, b, name in zip(trainer_grads, hand_grads, names, strict=True)
    ]
    report["grad_largest_relative_diff"] = max(relative)
    flat = [torch.cat([g.flatten() for g in grads]) for grads in (trainer_grads, hand_grads)]
    report["grad_relative_diff_all"] = float((flat[0] - flat[1]).norm() / flat[1].norm())
    report["trainer_first_lr"] = seen["lr"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=seen["lr"], weight_decay=0.0)
    optimizer.step()
    after = load_file(str(seen["run_dir"] / "model" / "model.safetensors"))
    hand_state = model.state_dict()
    hand_after = {name: hand_state[hand_name(name)] for name in after}
    report["weights_compared"] = [len(hand_after), len(after)]
    report["weight_max_abs_diff_after_step"], report["worst_weight"] = largest(after, hand_after)
    moved = max(float((after[k] - seen["weights"][k]).abs().max()) for k in after)
    report["largest_weight_change_in_the_step"] = moved

    # evaluation: the trainer's test scores vs the hand model (after the step) in eval mode
    test = corpus.split("test")
    model.eval()
    with torch.no_grad():
        test_waves = torch.stack([minimal_wave(Path(args.data) / e.audio_path) for e in test])
        hand_scores = torch.cat([model(x).log_softmax(-1) for x in test_waves.split(32)])
    records = [json.loads(line) for line in open(seen["run_dir"] / "predictions.jsonl")]
    trainer_scores = torch.tensor(
        [list(r["scores"].values()) for r in records if r["split"] == "test"]
    )
    report["test_examples"] = [len(trainer_scores), len(hand_scores)]
    report["test_score_max_abs_diff"] = float((trainer_scores - hand_scores).abs().max())
    report["test_predictions_equal"] = bool(
        (trainer_scores.argmax(-1) == hand_scores.argmax(-1)).all()
    )
    for key, value in report.items():
        print(f"{key}: {value}")
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
