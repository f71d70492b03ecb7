"""Loading a run config: YAML (1.2 booleans) plus dotted `key=value` overrides, validated against
the schema and then the cross-key rules, each failure one line naming the key."""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from emoscale.config.rules import check_rules
from emoscale.config.schema import RunConfig
from emoscale.errors import ConfigError


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _known_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, _known_keys(RunConfig), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown config key {key!r}{_closest(key)}"
    given = first.get("input")
    message = first["msg"].removeprefix("Value error, ")  # our validators' own words
    return f"config key {key!r}: {message} (got {given!r})"


class ConfigLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans, true and false only. PyYAML follows YAML 1.1, which reads
    yes/no/on/off as booleans: `mixed_precision: no` or label words [yes, no] would turn False."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [entry for entry in entries if entry[0] != "tag:yaml.org,2002:bool"]
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mapping_without_duplicates(loader: ConfigLoader, node: yaml.MappingNode, deep: bool = False):
    """PyYAML keeps the last of two equal keys; a repeated `train:` section then silently drops
    the first one's settings (issue 12). A repeated key is an error naming both places: the line,
    and the column too when both are on one line (`train: {max_steps: 2, max_steps: 5}`)."""
    _refuse_duplicates(loader, node)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _refuse_duplicates(loader: ConfigLoader, node: yaml.MappingNode) -> None:
    """Keys written beside a merge key (`<<: *anchor`) override the merged ones, as YAML says; a
    key twice among the merged mappings is refused too (PyYAML and the YAML spec disagree on which
    wins), as is a key twice inside one of them."""
    first_mark: dict = {}  # key -> where it first appeared
    merged: dict = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    _refuse_duplicates(loader, source)
                    _first_time(loader, source.value, merged)
            continue
        _first_time(loader, [(key_node, value_node)], first_mark)


def _first_time(loader: ConfigLoader, pairs: list, first_mark: dict) -> None:
    for key_node, _ in pairs:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = first_mark.get(key)
            if earlier is None:
                first_mark[key] = key_node.start_mark
                continue
        except TypeError:  # an unhashable key: construct_mapping says so
            continue
        first = f"line {earlier.line + 1}"
        if earlier.line == key_node.start_mark.line:
            first += f", column {earlier.column + 1}"
        raise yaml.constructor.ConstructorError(
            problem=f"duplicate key {key!r} (first on {first})", problem_mark=key_node.start_mark
        )


ConfigLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _unordered_or_binary(loader: ConfigLoader, node: yaml.Node):
    """`!!set` has no order (data.labels from a set: label ids that change with the process's hash
    seed, so ranks and runs disagree) and `!!binary` is bytes, which pydantic took as text."""
    raise yaml.constructor.ConstructorError(
        problem=f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} has no place in a config "
        "(write a list or plain text)",
        problem_mark=node.start_mark,
    )


for _tag in ("set", "binary", "omap", "pairs"):
    ConfigLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _unordered_or_binary)


def read_yaml(text: str) -> Any:
    """YAML 1.2 booleans, no duplicate keys; errors are yaml.YAMLError (see yaml_problem)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader)


def yaml_problem(error: yaml.YAMLError) -> str:
    """'LINE:COLUMN: what is wrong' (1-based) from a PyYAML error, in one line."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if "'\\t'" in problem or "\t" in problem:
        problem += " (YAML indents with spaces, not tabs)"
    return f"{mark.line + 1}:{mark.column + 1}: {problem}" if mark is not None else problem


def _is_text_key(dotted_key: str) -> bool:
    """Whether the schema types this key as a string (maybe None): paths, templates, names."""
    model: Any = RunConfig
    for part in dotted_key.split("."):
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    options = typing.get_args(model) if typing.get_origin(model) in (Union, UnionType) else (model,)
    return any(
        option is str
        or (typing.get_origin(option) is Annotated and typing.get_args(option)[0] is str)
        for option in options
    )


def parse_value(text: str, key: str = "") -> Any:
    """A command-line value as YAML would read it: `3e-4` is a float, `[q_proj,v_proj]` a list.
    A string key takes the text as it is: `prompt.template={text} is` is no YAML mapping."""
    if _is_text_key(key):
        return None if text.lower() in ("null", "none", "~") else text
    try:
        value = read_yaml(text) if text != "" else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override {key}={text}: not a valid YAML value ({problem})") from None
    return text if value is None and text.lower() not in ("null", "none", "~") else value


SECTIONS = frozenset(
    name for name, field in RunConfig.model_fields.items() if isinstance(field.default, BaseModel)
)


def apply_override(raw: dict, dotted_key: str, value: Any) -> None:
    parts = dotted_key.split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:  # a YAML section left empty (`train:`) holds nothing yet
            node[part] = {}
        child = node[part]
        if not isinstance(child, dict):
            raise ConfigError(f"config key {dotted_key!r}: {part!r} is a value, not a section")
        node = child
    if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
        # `train={lr: 0.5}` sets train.lr, as a config file's `train:` section would: replacing
        # the section dropped every train.* key given before it without a word
        node[parts[-1]] = _merge(node[parts[-1]], value)
    else:
        node[parts[-1]] = value


def read_config_file(path: str | Path) -> dict:
    """A YAML run config as a mapping of sections, before validation (report reads a finished
    run's config.yaml with it): a path that is no file, bytes that are not UTF-8, a YAML error
    or a document that is not a mapping is one line naming the file."""
    if not str(path).strip():  # Path("") is ".", the working directory
        raise ConfigError("config file '': an empty path; give a YAML file")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if path.exists() and not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file (a pipe or a device)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}:{yaml_problem(error)}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path}: not UTF-8 text (byte {error.start}: {error.reason})"
        ) from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of sections, got {type(loaded).__name__}"
        )
    # `train:` with nothing under it is an empty section, not a null one
    return {
        key: {} if value is None and key in SECTIONS else value for key, value in loaded.items()
    }


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None
) -> RunConfig:
    """Build the run config from an optional YAML file (or `base` dict) and `key=value` overrides."""
    raw: dict = dict(base or {})
    if path is not None:
        raw = _merge(raw, read_config_file(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
        apply_override(raw, key.strip(), parse_value(text, key.strip()))
    return validate(raw)


def validate(raw: dict) -> RunConfig:
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None
    check_rules(config)
    return config


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
