"""Model families. Each plugs into the one trainer through the `ModelFamily` interface (family.py).

The prompt classifier: prompt_lm.py (the family), prompted_lm.py (the LM wrapper), label_scoring.py
(score mode), adapters.py (loading, quantisation, PEFT methods), base_model.py (which base model an
adapter belongs to). Speech + text fusion (LoRA-MER): speech_text.py (the family), speech_encoder.py,
text_features.py, pooling.py, fusion.py, mine.py.
May import: emoscale.errors, emoscale.data, emoscale.config.
"""

from __future__ import annotations


def build_family(config, corpus):
    """The family that `model.family` names, with every input check that needs no weights done."""
    if config.model.family == "prompt_lm":
        from emoscale.models import adapters, base_model, model_folder
        from emoscale.models.label_scoring import check_label_scoring, check_label_words
        from emoscale.models.prompt_lm import PromptLMFamily

        model_folder.check(adapters.check_model_folder(config.model.path))
        base_model.check_code(config.model.path, config.model.trust_remote_code)
        hf_config = model_folder.read_config(config.model.path, config.model.trust_remote_code)
        adapters.check_adapters(config)  # after check_code: the skeleton may run the folder's code
        if config.eval.mode == "score":
            check_label_scoring(config.model.path, config.model.trust_remote_code)
        tokenizer = adapters.load_tokenizer(config)
        model_folder.check_vocabulary(config.model.path, tokenizer, hf_config)
        family = PromptLMFamily(config, corpus.info, tokenizer, corpus.context_only)
        check_label_words(family.label_names, family.label_words, family.answers)
        return family
    if config.model.family == "fusion":
        from emoscale.models.speech_text import build_speech_text_family

        return build_speech_text_family(config, corpus)
    raise ValueError(f"unknown model family {config.model.family!r}")
