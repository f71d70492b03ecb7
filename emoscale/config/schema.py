"""The run config's schema: every key with its type and default, in one typed pydantic model.

Unknown keys, wrong types and impossible values fail with one line naming the key (see
`loading.py`); cross-key rules (which options cannot be combined) live in `rules.py`.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

METRICS = ("accuracy", "macro_f1", "weighted_f1", "ua", "wa")
# A folder key given as `key=` is a mistake, not the current folder (Path("") is ".").
FolderPath = Annotated[str, Field(min_length=1)]
Metric = Literal["accuracy", "macro_f1", "weighted_f1", "ua", "wa"]


class Section(BaseModel):
    # extra="forbid": a misspelt key is an error, never a silently ignored setting.
    # allow_inf_nan=False: `train.lr=.inf` fails here, not as a nan loss at step 2 (issue 12).
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: object, info: ValidationInfo) -> object:
        """pydantic's lax mode reads true as 1: `batch_size: true` trained with batch size 1."""
        if isinstance(value, bool):
            kinds = _types(cls.model_fields[info.field_name].annotation)
            if kinds & {int, float} and bool not in kinds:
                raise ValueError("Input should be a number, not true or false")
        return value


def _types(annotation: object) -> set:
    """The plain types an annotation admits: int | None -> {int, NoneType}."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:  # Literal[1, 2] admits ints, not its values
        return {type(argument) for argument in arguments}
    if not arguments:
        return {annotation}
    return set().union(*(_types(argument) for argument in arguments))


class ModelConfig(Section):
    family: Literal["prompt_lm", "fusion"] = "prompt_lm"
    path: FolderPath | None = None  # a local Hugging Face model folder; nothing is downloaded
    # family fusion (models/speech_text.py): a speech encoder and a text encoder, local folders
    # WavLM / HuBERT / wav2vec2 folder with its feature extractor
    audio_path: FolderPath | None = None
    # a text encoder folder (RoBERTa-base in LoRA-MER), always frozen
    text_path: FolderPath | None = None
    # lora: LoRA on the speech encoder's q/v (fusion.lora_*); frozen; full: every encoder weight
    # trains (a speech encoder trained from scratch or fully fine-tuned)
    audio_method: Literal["lora", "frozen", "full"] = "lora"
    audio_layers: Literal["last", "weighted"] = (
        "last"  # weighted: learned softmax mix of all layers
    )
    modalities: Literal["audio", "text", "both"] = "both"
    # none: zero-shot; ptuning_v2: deep prefix tuning (P-Tuning v2); p_tuning: prompt encoder
    method: Literal["none", "lora", "full", "ptuning_v2", "prompt_tuning", "p_tuning"] = "lora"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights as loaded
    trust_remote_code: bool = False
    # Memory-constrained mode (bitsandbytes): LLM.int8 or NF4 weights, adapters trained on top.
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    # None: uint8. ZeRO-3 can shard 4-bit weights only when this equals the other weights' dtype.
    bnb_4bit_quant_storage: Literal["uint8", "float32", "bfloat16", "float16"] | None = None


class LoraConfig(Section):
    r: int = Field(8, ge=1)  # rank 8, as in the LLM paper
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = (
        None  # None: PEFT's choice for the architecture (q/v projections)
    )
    use_dora: bool = False  # weight-decomposed LoRA (DoRA)


class PTuningConfig(Section):
    """Virtual-token methods: ptuning_v2 (prefix in every layer), prompt_tuning, p_tuning."""

    num_virtual_tokens: int = Field(32, ge=1)  # the LLM paper's prefix length
    prefix_projection: bool = False  # ptuning_v2: reparameterise the prefix through an MLP
    encoder_hidden_size: int = Field(512, ge=1)  # that MLP's (or p_tuning's encoder's) hidden size
    # ptuning_v2's starting prefix (models/prefix_init.py). `tokens`: the frozen model's own
    # keys/values of real tokens (Li & Liang 2021), so training starts from the unprefixed model's
    # behaviour. `random`: PEFT's N(0, 1), what the paper's ChatGLM2 code (THUDM's PrefixEncoder)
    # does; on SmolLM2-135M it wrecked the frozen model at step 0 and never learned (issue 14).
    init: Literal["tokens", "random"] = "tokens"
    # `tokens` reads this text (repeated/cut to num_virtual_tokens); None: the run's own prompt
    # with an empty text slot.
    init_text: str | None = Field(None, min_length=1)


class DataConfig(Section):
    dataset: str = "csv"  # a name in emoscale.data.CORPORA
    path: FolderPath | None = None  # the corpus folder in its official layout
    text_column: str = "text"  # generic CSV/TSV/JSONL only
    label_column: str = "label"
    id_column: str | None = None
    labels: list[str] | None = None  # generic corpora: the label set (else taken from train)
    target: str | None = (
        None  # which labelling: meld emotion|sentiment, mosi 2class|..., None: the corpus'
    )
    fold: int | None = Field(None, ge=0)  # re-split for cross-validation fold i (data/folds.py)
    num_folds: int | None = Field(None, ge=2)  # None: the corpus' protocol (IEMOCAP 5 sessions ...)
    max_length: int = Field(
        256, ge=8
    )  # prompt (fusion: text-encoder) tokens; longer texts truncated, counted
    group_by_length: bool = True  # batches of similar length: less padding
    max_seconds: float = Field(
        8.0, gt=0.0
    )  # audio: longer clips cropped (random in training, centred in eval)
    skip_bad_audio: bool = (
        False  # missing/empty/unreadable audio: skip and count instead of stopping
    )
    # Evaluation audio cropped (centred) to max_seconds too. LoRA-MER does not crop at test time
    # (false); true bounds memory on long utterances (issue 15).
    eval_crop: bool = True
    # Audio clips no longer than max_seconds, decoded and resampled once and kept in memory, up to
    # this many MB per process (each DataLoader worker holds its own); 0: decoded every epoch.
    audio_cache_mb: float = Field(512.0, ge=0.0)
    # family fusion: an `id<TAB>text` file (e.g. ASR output, as LoRA-MER used) replacing the
    # corpus' transcriptions for every example (data/transcripts.py); None: the corpus' own text
    transcripts: str | None = None
    # The dev split's examples also train (issue 15): with eval.select=last nothing is chosen on
    # dev, and a small corpus (EmoDB's speaker folds: 7 of 8 speakers left to train) loses less.
    # Dev is still evaluated and logged, but it is no longer held out.
    train_on_dev: bool = False


class PromptConfig(Section):
    template: str | None = None  # None: the corpus' default; must contain {text}, may use {labels}
    labels: list[str] | None = None  # label words the model reads and answers; None: the corpus'
    # None: the papers' plain prompt. "tokenizer": the model's own chat template (instruction as the
    # user turn, label as the assistant's answer); "chatglm2": ChatGLM2's [Round 1] 问/答 format;
    # or a Jinja chat template (models/prompt_tokens.py).
    chat_template: str | None = None
    length_normalize: bool = False  # score mode: mean instead of sum of answer-token log-probs
    context_turns: int = Field(
        0, ge=0
    )  # earlier turns of the dialogue shown; 0 reproduces the papers
    context_max_tokens: int | None = Field(
        None, ge=1
    )  # context trimmed oldest-first to this; None: no cap


class FusionConfig(Section):
    """LoRA-MER (models/speech_text.py); the paper's recipe: recipes/iemocap_fusion_lora_wavlm.yaml."""

    dim: int = Field(256, ge=1)  # D: Conv1D channels and f_a, f_t size (paper eq. 1)
    classifier_hidden: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # lambda in L = L_ce + lambda * (-I) (eq. 13). None: 0.25 with both modalities, 0 with one.
    mine_weight: float | None = Field(None, ge=0.0)
    mine_hidden: int = Field(256, ge=1)  # statistics network T(x, z) width
    mine_ema_decay: float | None = Field(
        0.99, gt=0.0, lt=1.0
    )  # moving-average gradient correction; None: off
    lora_r: int = Field(
        2, ge=1
    )  # speech-encoder LoRA: r=2 on q/v gives 73,728 parameters on a base model
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lora_target_modules: list[str] = ["q_proj", "v_proj"]
    # None: $EMOSCALE_CACHE/text_features (~/.cache/emoscale)
    text_cache_dir: FolderPath | None = None
    # The speech encoder's own dropout and SpecAugment in training (issue 15). when_trained: on in
    # the lora/full arms, off in the frozen arm (so LoRA-MER's Table 1 frozen-vs-LoRA rows also
    # differ in augmentation; the paper does not say); always / never: the same in every arm.
    encoder_augmentation: Literal["when_trained", "always", "never"] = "when_trained"
    # Frames/tokens -> f: attentive statistics pooling (the paper's eq. 1), or mean_std: the same
    # layers with every real frame weighted equally (not the paper's; for ablations).
    pooling: Literal["attentive", "mean_std"] = "attentive"
    # The pooling's layers (the paper's eq. 1): a Conv1D to D channels before the statistics and a
    # projection of [mean, std] back to D after them. false (not the paper's): f is [mean, std] of
    # the encoder's own frames, 2 x its width; one modality only (AT-Fusion needs D on both sides).
    pooling_layers: bool = True
    # The classifier on f (or h): 2 = Linear(classifier_hidden), ReLU, dropout, Linear (emoscale's
    # reading of the paper's "linear layers"); 1 = dropout, then one Linear layer.
    classifier_layers: Literal[1, 2] = 2


class TrainConfig(Section):
    batch_size: int = Field(16, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; overrides epochs when set
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    # None: whatever `accelerate launch` says (accelerate config / --mixed_precision); a value here wins.
    mixed_precision: Literal["no", "bf16", "fp16"] | None = None
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    early_stopping_patience: int | None = Field(None, ge=1)  # evaluations without dev improvement
    save_every_steps: int | None = Field(None, ge=1)  # also saved at every evaluation
    keep_checkpoints: int = Field(2, ge=1)  # newest N kept, plus the best
    log_every_steps: int = Field(10, ge=1)
    num_workers: int = Field(0, ge=0)
    # Recompute activations in backward: less memory, about a third more time.
    gradient_checkpointing: bool = False
    # A batch whose loss is nan/inf: false stops the run naming the step and examples; true skips
    # the batch (no gradient from it) and counts it in run.json.
    skip_nonfinite: bool = False
    # Cross-entropy weights per class. "balanced": N / (K * n_k) over the training split's labels
    # (scikit-learn's convention; 1 for every class of a balanced split), so each class weighs the
    # same in the loss, as it does in UA and macro-F1. Neither paper weights its classes: "none".
    class_weights: Literal["none", "balanced"] = "none"


class EvalConfig(Section):
    every_steps: int | None = Field(None, ge=1)  # None: at the end of each epoch only
    metric: Metric = (
        "macro_f1"  # dev metric that picks the best checkpoint and drives early stopping
    )
    mode: Literal["score", "generate"] = "score"
    # The model that is tested: the checkpoint with the best dev metric (the papers' early
    # stopping), or the model after the last step. A dev split of one speaker (EmoDB's speaker
    # folds) picks an early, undertrained epoch by chance: benchmarks/emodb_factors.py, issue 15.
    select: Literal["best", "last"] = "best"
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(8, ge=1)  # generate mode
    # generate mode under ZeRO-3: every rank must keep stepping until all finish (None: automatic)
    synced_gpus: bool | None = None


class RunConfig(Section):
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    ptuning: PTuningConfig = PTuningConfig()
    data: DataConfig = DataConfig()
    prompt: PromptConfig = PromptConfig()
    fusion: FusionConfig = FusionConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = Field(42, ge=0, lt=2**32)  # numpy's seed range
    output_dir: FolderPath | None = None  # None: runs/<dataset>-<method>-<time>

    @property
    def method_label(self) -> str:
        """The method as the papers' tables name it: 'lora', 'ptuning_v2', ... or for the fusion
        family its modalities and speech-encoder treatment, e.g. 'both-lora', 'audio-frozen'."""
        if self.model.family == "fusion":
            return f"{self.model.modalities}-{self.model.audio_method}"
        return self.model.method
