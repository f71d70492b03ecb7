"""A SentencePiece BPE model as a `tokenizers` tokenizer that encodes exactly as SentencePiece does.

Follows the model file's own settings (`normalizer_spec`): its precompiled normalisation table,
extra-whitespace removal, the dummy "▁" prefix and whitespace escaping. BPE merges are ranked by
the merged piece's score, as SentencePiece's BPE applies them; characters outside the vocabulary
fall back to byte pieces (`<0x41>`). What it cannot reproduce (Unigram/char/word models,
user-defined pieces, whitespace as suffix) it refuses with the setting's name.

Extra special tokens (ChatGLM's `[gMASK]`, `<sop>` ...) get the ids after the last piece. They are
never matched in text (the tokenizer is saved with `split_special_tokens`): SentencePiece encodes a
literal "[gMASK]" or "</s>" in a sentence as text, and so does this tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers
from tokenizers.models import BPE

from emoscale.errors import EmoscaleError

# sentencepiece_model.proto: ModelProto.SentencePiece.Type and TrainerSpec.ModelType
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE, UNUSED = 1, 2, 3, 4, 6, 5
BPE_MODEL = 2


def read_model(path: Path):
    """The parsed SentencePiece model file (a protobuf `ModelProto`)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError: not a SentencePiece model file
        raise EmoscaleError(f"{path}: not a SentencePiece model file ({error})") from None
    if not proto.pieces:
        raise EmoscaleError(f"{path}: not a SentencePiece model file (no pieces)")
    return proto


def check_supported(proto, path: Path) -> None:
    """Refuse, naming the setting, what `fast_tokenizer` would not encode as SentencePiece does."""
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != BPE_MODEL:
        raise EmoscaleError(
            f"{path}: trainer_spec.model_type is {trainer.model_type}, expected {BPE_MODEL} (BPE, "
            "as ChatGLM2/3's tokenizer.model); other SentencePiece models are not converted"
        )
    user_defined = [p.piece for p in proto.pieces if p.type == USER_DEFINED]
    if user_defined:
        raise EmoscaleError(
            f"{path}: {len(user_defined)} user-defined pieces (first {user_defined[0]!r}); "
            "expected none, as in ChatGLM2/3's tokenizer.model"
        )
    if trainer.treat_whitespace_as_suffix:
        raise EmoscaleError(
            f"{path}: trainer_spec.treat_whitespace_as_suffix is set; expected unset"
        )
    if not normalizer.escape_whitespaces:
        raise EmoscaleError(f"{path}: normalizer_spec.escape_whitespaces is off; expected on")


def _merges(proto) -> list[tuple[str, str]]:
    """Every split of a normal piece into two normal pieces, highest-scoring merged piece first:
    SentencePiece's BPE merges the adjacent pair whose union scores highest."""
    scores = {p.piece: (p.score, index) for index, p in enumerate(proto.pieces) if p.type == NORMAL}
    ranked = []
    for piece, (score, index) in scores.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in scores and right in scores:
                ranked.append((-score, index, left, right))
    return [(left, right) for _, _, left, right in sorted(ranked)]


def _normalizer(spec) -> normalizers.Normalizer:
    # SentencePiece's order: table, whitespace cleanup, dummy prefix, "▁" for spaces.
    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:  # only spaces: SentencePiece leaves newlines and tabs alone
        steps += [
            normalizers.Replace(Regex(r"\A +| +\z"), ""),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    steps.append(normalizers.Replace(" ", "▁"))
    if spec.add_dummy_prefix:
        steps.append(
            normalizers.Prepend("▁")
        )  # Prepend leaves an empty text empty, as SentencePiece
    return normalizers.Sequence(steps)


def fast_tokenizer(path: Path, extra_special: list[str]) -> Tokenizer:
    """The tokenizer of the SentencePiece BPE model at `path`; `extra_special` take the ids after
    the model's last piece, in order."""
    proto = read_model(path)
    check_supported(proto, path)
    vocab = {p.piece: index for index, p in enumerate(proto.pieces)}
    for offset, token in enumerate(extra_special):
        vocab[token] = len(proto.pieces) + offset
    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=_merges(proto),
            unk_token=proto.trainer_spec.unk_piece,
            fuse_unk=True,
            byte_fallback=proto.trainer_spec.byte_fallback,
        )
    )
    tokenizer.normalizer = _normalizer(proto.normalizer_spec)
    steps = [decoders.Replace("▁", " ")]
    if proto.trainer_spec.byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(steps)
    # SentencePiece's control pieces (<unk>, <s>, </s>) and the extra ones are special: skipped when
    # decoding with skip_special_tokens, never matched in text (split_special_tokens, see above).
    controls = [p.piece for p in proto.pieces if p.type in (UNKNOWN, CONTROL)]
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in controls + extra_special]
    )
    return tokenizer
