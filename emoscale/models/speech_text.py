"""LoRA-MER: speech + text emotion recognition with AT-Fusion and a MINE term (`model.family: fusion`).

    audio --speech encoder (LoRA on q/v, or frozen)--> frames --Conv1D + ASP--> f_a in R^D  (eq. 1)
    text  --frozen text encoder (features cached)----> tokens --Conv1D + ASP--> f_t in R^D  (eq. 1)
    h = AT-Fusion(f_a, f_t) (eqs. 2-4) --> linear layers --> logits
    L = cross-entropy + lambda * (-I_MINE(f_a; f_t))  (eq. 13; the DV bound is maximised)

Ablations are config keys: `model.modalities: audio|text|both` (one modality: its vector goes
straight to the classifier, no fusion, no MINE), `fusion.mine_weight` (lambda; 0 drops MINE),
`model.audio_method: lora|frozen`, `model.audio_layers: last|weighted`.

The paper's recipe (IEMOCAP, leave-one-session-out): Adam at lr 3e-4 (AdamW with weight decay 0 is
Adam), cosine annealing without warmup, batch 16, at most 40 epochs with early stopping on dev; see
recipes/iemocap_fusion_lora_wavlm.yaml. The best epoch is chosen on dev, never on the test fold.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import PartialState
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from emoscale.config import RunConfig
from emoscale.data.audio import (
    AudioReader,
    EpochTaggedBatches,
    check_corpus_audio,
    pad_waves,
    resolve_audio_path,
)
from emoscale.data.batching import LengthGroupedBatches, sorted_batches
from emoscale.data.examples import Corpus, Example
from emoscale.data.transcripts import apply_transcripts
from emoscale.errors import ConfigError
from emoscale.models import model_folder
from emoscale.models.class_weights import weighted_loss
from emoscale.models.fusion import ATFusion, classifier
from emoscale.models.mine import MINE
from emoscale.models.pooling import AttentiveStatsPooling
from emoscale.models.speech_encoder import (
    SpeechEncoder,
    check_speech_folder,
    load_speech_encoder,
    receptive_field,
)
from emoscale.models.text_features import TextFeatureCache, check_cache_root

PAPER_MINE_WEIGHT = 0.25  # lambda in LoRA-MER
# What the model returns for MINE on a batch of one clip: its only "marginal" pair would be the
# joint pair itself (the bound is exactly 0, and the EMA correction would still move MINE).
NO_MARGINAL_PAIR = "no marginal pair"


def mine_weight(config: RunConfig) -> float:
    weight = config.fusion.mine_weight
    if weight is None:
        return PAPER_MINE_WEIGHT if config.model.modalities == "both" else 0.0
    return weight


class SpeechTextModel(nn.Module):
    """Everything that trains, in one module, so DDP and DeepSpeed wrap it whole."""

    def __init__(
        self, speech: SpeechEncoder | None, text_dim: int | None, num_labels: int, config: RunConfig
    ):
        super().__init__()
        dim = config.fusion.dim
        self.speech = speech
        fusion = config.fusion
        options = {"attentive": fusion.pooling == "attentive", "layers": fusion.pooling_layers}
        self.audio_pool = (
            AttentiveStatsPooling(speech.hidden_size, dim, **options) if speech else None
        )
        self.text_pool = AttentiveStatsPooling(text_dim, dim, **options) if text_dim else None
        both = speech is not None and text_dim is not None
        self.fusion = ATFusion(dim) if both else None
        self.mine = None
        if both and mine_weight(config) > 0:
            hidden, decay = config.fusion.mine_hidden, config.fusion.mine_ema_decay
            self.mine = MINE(dim, dim, hidden, ema_decay=decay)
        # f's width: D, or 2 x the encoder's width without the pooling layers (one modality)
        width = (self.audio_pool or self.text_pool).output_dim
        self.classifier = classifier(
            width, fusion.classifier_hidden, num_labels, fusion.dropout, fusion.classifier_layers
        )

    def forward(self, input_values=None, audio_mask=None, text_features=None, text_mask=None):
        """(logits [B, k], MINE lower bound in nats or None: computed in training only)."""
        f_a = f_t = mutual_information = None
        if self.speech is not None:
            f_a = self.audio_pool(*self.speech(input_values, audio_mask))
        if self.text_pool is not None:
            f_t = self.text_pool(text_features, text_mask)
        if self.fusion is None:  # one modality: its vector is the utterance's
            return self.classifier(f_a if f_a is not None else f_t), None
        h, _ = self.fusion(f_a, f_t)
        if self.mine is not None and self.training:
            if f_a.shape[0] > 1:
                mutual_information = self.mine.lower_bound(f_a, f_t)
            else:  # one pair has no marginal: the term is left out, not a silent 0 (issue 15)
                mutual_information = NO_MARGINAL_PAIR
        return self.classifier(h), mutual_information


class SpeechTextItems(Dataset):
    """One example: decoded audio and/or cached text features. Runs in the DataLoader workers."""

    def __init__(self, rows: list[dict], reader: AudioReader | None, seed: int):
        self.rows, self.reader, self.seed = rows, reader, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> dict:
        # training indices carry their epoch (audio.EpochTaggedBatches)
        index, epoch = key if isinstance(key, tuple) else (key, None)
        row = self.rows[index]
        item = {"index": index, "label": row["label"]}
        if self.reader is not None:
            crop_seed = None if epoch is None else f"{self.seed}:{epoch}:{index}"
            item["wave"] = self.reader.read(row["audio"], crop_seed)
        if row.get("text_features") is not None:
            item["text"] = TextFeatureCache.load(row["text_features"])
        return item


def collate(items: list[dict]) -> dict:
    batch = {
        "labels": torch.tensor([item["label"] for item in items]),
        "example_index": torch.tensor([item["index"] for item in items]),
    }
    if "wave" in items[0]:
        batch["input_values"], batch["audio_mask"] = pad_waves([item["wave"] for item in items])
    if "text" in items[0]:
        texts = [item["text"] for item in items]
        width = max(text.shape[0] for text in texts)
        batch["text_features"] = torch.zeros(len(texts), width, texts[0].shape[1])
        batch["text_mask"] = torch.zeros(len(texts), width, dtype=torch.long)
        for row, text in enumerate(texts):
            batch["text_features"][row, : text.shape[0]] = text
            batch["text_mask"][row, : text.shape[0]] = 1
    return batch


class SpeechTextFamily:
    """LoRA-MER as a model family for the trainer (see models/family.py)."""

    def __init__(
        self,
        config: RunConfig,
        corpus: Corpus,
        reader: AudioReader | None,
        audio_seconds: dict[str, float],
        text_cache: TextFeatureCache | None,
    ):
        self.config = config
        # [k] per label, or None; training sets it (train.prepare_inputs)
        self.class_weights: torch.Tensor | None = None
        self.label_names = corpus.info.label_names
        self.reader = reader  # None without the audio modality
        self.audio_seconds = audio_seconds  # resolved path -> duration, from the header check
        self.text_cache = text_cache  # None without the text modality
        self.truncated = Counter()  # split -> texts cut to data.max_length tokens
        # Every rank asks for the same split's batches at once (training, eval), so rank 0 encodes
        # missing text features while the others wait; streamed prediction clears it: its ranks
        # label different chunks, and a barrier would wait for a rank that never comes.
        self.ranks_together = True

    # --- data ---------------------------------------------------------------------------------

    def _rows(self, examples: list[Example], split: str) -> list[dict]:
        rows = [{"label": example.label} for example in examples]
        if self.reader is not None:
            for row, example in zip(rows, examples, strict=True):
                row["audio"] = str(resolve_audio_path(example.audio_path, self.config.data.path))
        if self.text_cache is not None:
            state = PartialState()
            # rank 0 encodes what is missing; the other ranks then find it cached (each file is
            # written under a temporary name, so ranks that do not wait only repeat work)
            turns = state.main_process_first() if self.ranks_together else contextlib.nullcontext()
            with turns:
                paths = self.text_cache.ensure([example.text for example in examples], state.device)
            for row, path in zip(rows, paths, strict=True):
                row["text_features"] = str(path)
            self.truncated[split] = sum(TextFeatureCache.truncated(path) for path in set(paths))
        return rows

    def dataloader(
        self, examples: list[Example], train: bool, seed: int, split: str = ""
    ) -> DataLoader:
        rows = self._rows(examples, split)
        if self.reader is not None:
            cropped = train or self.config.data.eval_crop
            max_seconds = self.config.data.max_seconds if cropped else float("inf")
            lengths = [
                int(1000 * min(self.audio_seconds[row["audio"]], max_seconds)) for row in rows
            ]
        else:
            lengths = [len(example.text) for example in examples]
        if train:
            sampler = EpochTaggedBatches(
                LengthGroupedBatches(
                    lengths, self.config.train.batch_size, seed, self.config.data.group_by_length
                )
            )
        else:
            sampler = sorted_batches(lengths, self.config.eval.batch_size)
        return DataLoader(
            SpeechTextItems(rows, self.reader, seed),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.config.train.num_workers,
            # Workers decode audio; restarting them every epoch cost ~0.1 s per epoch and evaluation.
            persistent_workers=self.config.train.num_workers > 0,
        )

    # --- model --------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        speech = None
        if self.reader is not None:
            speech = load_speech_encoder(self.config)
        text_dim = self.text_cache.hidden_size if self.text_cache is not None else None
        return SpeechTextModel(speech, text_dim, len(self.label_names), self.config)

    @staticmethod
    def _inputs(batch: dict) -> dict:
        return {
            key: value for key, value in batch.items() if key not in ("labels", "example_index")
        }

    def loss(self, model: nn.Module, batch: dict, terms: dict | None = None) -> torch.Tensor:
        logits, mutual_information = model(**self._inputs(batch))
        if self.class_weights is None:
            cross_entropy = F.cross_entropy(logits.float(), batch["labels"])
        else:
            weights = self.class_weights.to(logits.device)[batch["labels"]]
            per_example = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
            cross_entropy = weighted_loss(per_example, weights, len(per_example))
        if mutual_information is None:
            return cross_entropy
        skipped = isinstance(mutual_information, str)  # NO_MARGINAL_PAIR: CE alone, counted
        if terms is not None:  # the loss alone hides how much each part moves
            terms["cross_entropy"] = cross_entropy.detach()
            terms["mine_mi"] = torch.zeros(()) if skipped else mutual_information.detach().float()
            terms["mine_skipped"] = torch.tensor(float(skipped))  # its mean: the share of batches
        if skipped:
            mine = getattr(model, "module", model).mine
            # every MINE weight stays in the graph with a zero gradient, as DDP requires
            return cross_entropy + 0.0 * sum(p.sum() for p in mine.parameters())
        return cross_entropy - mine_weight(self.config) * mutual_information  # eq. 13: MI maximised

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = model(**self._inputs(batch))
        scores = logits.float().log_softmax(dim=-1)
        return scores.argmax(dim=-1), scores

    def save_model(self, model: nn.Module, folder: Path, state_dict: dict | None = None) -> None:
        """model.safetensors: every trained tensor (LoRA, layer weights, pooling, fusion, MINE,
        classifier) under SpeechTextModel's names; speech_adapter/: the LoRA in PEFT's format."""
        folder.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else model.state_dict()
        trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        trained |= {name for name, _ in model.named_buffers() if not name.startswith("speech.")}
        tensors = {
            name: value.detach().cpu().contiguous()
            for name, value in state.items()
            if name in trained
        }
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "labels.json").write_text(json.dumps(list(self.label_names)))
        if model.speech is not None and self.config.model.audio_method == "lora":
            prefix = "speech.encoder."
            adapter_state = {
                name.removeprefix(prefix): value
                for name, value in state.items()
                if name.startswith(prefix)
            }
            model.speech.encoder.save_pretrained(
                folder / "speech_adapter", state_dict=adapter_state
            )


def _check_lora_targets(config: RunConfig) -> None:
    """LoRA targets must name modules of this speech model: checked on the meta device, no weights."""
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(AutoConfig.from_pretrained(config.model.audio_path))
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for target in config.fusion.lora_target_modules:
        if target not in names:
            raise ConfigError(
                f"config key 'fusion.lora_target_modules': {target!r} is not a module of {config.model.audio_path}"
            )


def build_speech_text_family(config: RunConfig, corpus: Corpus) -> SpeechTextFamily:
    """Every input check that needs no weights: model folders, feature extractor, audio files."""
    reader, seconds, text_cache = None, {}, None
    if config.data.transcripts is not None:
        apply_transcripts(corpus, config.data.transcripts)
    if config.model.modalities in ("audio", "both"):
        from transformers import AutoConfig, AutoFeatureExtractor

        folder = check_speech_folder(config.model.audio_path)
        model_folder.check(folder, "model.audio_path", tokenizer=False)  # weights, as model.path
        if config.model.audio_method == "lora":
            _check_lora_targets(config)
        extractor = AutoFeatureExtractor.from_pretrained(folder)
        reader = AudioReader(
            extractor.sampling_rate,
            config.data.max_seconds,
            normalize=bool(getattr(extractor, "do_normalize", False)),
            min_samples=receptive_field(AutoConfig.from_pretrained(folder)),
            eval_crop=config.data.eval_crop,
            # Only the main process keeps decoded clips: the trainer's epoch loader
            # (accelerate's skip_first_batches) starts new DataLoader workers every epoch, so a
            # worker's cache would be thrown away after one epoch, having cost its memory.
            cache_megabytes=config.data.audio_cache_mb if config.train.num_workers == 0 else 0,
        )
        seconds = check_corpus_audio(corpus, config.data.path, config.data.skip_bad_audio)
        bad = {reason: n for reason, n in corpus.dropped.items() if reason.startswith("audio:")}
        if bad and PartialState().is_main_process:  # run.json's data.dropped keeps the counts
            print(f"data.skip_bad_audio: skipped {sum(bad.values())} examples ({bad})")
    if config.model.modalities in ("text", "both"):
        from transformers import AutoTokenizer

        folder = Path(config.model.text_path)
        if folder.is_file():
            raise ConfigError(
                f"config key 'model.text_path': {folder} is a file, not a model folder"
            )
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"config key 'model.text_path': {folder} is not a Hugging Face model folder (no config.json)"
            )
        model_folder.check(folder, "model.text_path")  # a damaged one fails here, in one line
        try:
            AutoTokenizer.from_pretrained(folder)  # fails here, not after the speech model loaded
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"config key 'model.text_path': no loadable tokenizer in {folder} ({error})"
            ) from None
        check_cache_root(config)  # before the speech encoder loads
        text_cache = TextFeatureCache(folder, config.data.max_length, config.fusion.text_cache_dir)
    return SpeechTextFamily(config, corpus, reader, seconds, text_cache)
