"""Config: YAML + dotted overrides, one-line errors that name the key."""

from __future__ import annotations

import re

import pytest

from emoscale.config import load_config
from emoscale.errors import ConfigError


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=list(overrides))
    return str(caught.value)


def test_overrides_are_typed_like_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 1e-3\nlora:\n  r: 4\n")
    config = load_config(
        path, ["train.lr=3e-4", "lora.target_modules=[q_proj,v_proj]", "train.max_steps=null"]
    )
    assert config.train.lr == 3e-4 and config.lora.r == 4
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.train.max_steps is None


def test_defaults_follow_the_papers():
    config = load_config()
    assert (config.lora.r, config.train.batch_size, config.eval.mode) == (8, 16, "score")


def test_unknown_key_suggests_the_closest():
    assert error_of("train.lrr=1") == "unknown config key 'train.lrr' (did you mean 'train.lr'?)"


def test_wrong_type_and_impossible_values_name_the_key():
    assert error_of("train.lr=fast").startswith(
        "config key 'train.lr': Input should be a valid number"
    )
    assert error_of("train.batch_size=0") == (
        "config key 'train.batch_size': Input should be greater than or equal to 1 (got 0)"
    )
    assert error_of("eval.metric=f1").startswith(
        "config key 'eval.metric': Input should be 'accuracy'"
    )


def test_unknown_dataset_lists_the_known_ones():
    assert error_of("data.dataset=imdb").startswith(
        "config key 'data.dataset': unknown dataset 'imdb'; known: "
    )


def test_template_must_hold_the_text():
    assert error_of("prompt.template=Classify") == (
        "config key 'prompt.template': must contain {text} (and may contain {labels})"
    )


def test_malformed_override_and_missing_file(tmp_path):
    assert error_of("train.lr") == "override 'train.lr': expected key=value, e.g. train.lr=3e-4"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_yes_no_words_stay_strings():
    assert load_config(overrides=["train.mixed_precision=no"]).train.mixed_precision == "no"
    assert load_config(overrides=["model.load_in_8bit=false"]).model.load_in_8bit is False


def test_yaml_reads_only_true_and_false_as_booleans(tmp_path):
    """YAML 1.2's booleans, in files and on the command line: label words yes/no stay words."""
    config = load_config(overrides=["prompt.labels=[yes,no,off]", "model.load_in_4bit=true"])
    assert config.prompt.labels == ["yes", "no", "off"] and config.model.load_in_4bit is True
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  mixed_precision: no\nprompt:\n  labels: [Yes, No]\n")
    config = load_config(path)
    assert (config.train.mixed_precision, config.prompt.labels) == ("no", ["Yes", "No"])


def test_yaml_merge_keys_share_settings_and_keys_beside_them_win(tmp_path):
    # `<<:` merge keys are plain YAML: a section reused, one key changed beside it.
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  <<: {lr: 0.001, epochs: 2, batch_size: 8}\n  epochs: 5\n")
    train = load_config(path).train
    assert (train.lr, train.epochs, train.batch_size) == (0.001, 5, 8)


def test_a_key_repeated_beside_a_merge_key_is_still_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  <<: {lr: 0.001}\n  epochs: 5\n  epochs: 6\n")
    with pytest.raises(ConfigError, match=r"4:3: duplicate key 'epochs' \(first on line 3\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("yaml_text", "where"),
    [
        (
            "train:\n  <<: {lr: 0.001, lr: 0.002}\n",
            "2:19: duplicate key 'lr' (first on line 2, column 8)",
        ),
        (
            "train:\n  <<: [{lr: 0.001}, {lr: 0.5}]\n",
            "2:22: duplicate key 'lr' (first on line 2, column 9)",
        ),
    ],
    ids=["inside_a_merged_mapping", "in_two_merged_mappings"],
)
def test_a_key_twice_among_merged_mappings_is_refused(tmp_path, yaml_text, where):
    # PyYAML lets the later merged mapping win where the YAML spec says the earlier: neither.
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=re.escape(f"config file {path}:{where}")):
        load_config(path)
