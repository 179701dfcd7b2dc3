"""Reading a YAML config file and `--set key=value` overrides into plain values.

Whatever the file holds (binary bytes, a directory, a list, a key given twice,
non-string keys, YAML that does not parse), the result is a mapping or one
`ConfigError` that names the file (or the override) and what is wrong, on one
line. Checking the values against a config's fields is `metarl.config`'s job.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A user's configuration is invalid; the message names the key or the file."""


def short_repr(value) -> str:
    """repr(value), cut to one short line for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def text_number_hint(value) -> str:
    """A hint for a number such as 1e-5 written without a dot: PyYAML reads it as text."""
    try:
        text_number = isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        text_number = False
    return f" (YAML reads {value} as text: write 1.0e-5, not 1e-5)" if text_number else ""


class _DuplicateKey(Exception):
    def __init__(self, key, first_line: int, line: int):
        super().__init__(f"key {short_repr(key)} is given twice (lines {first_line} and {line})")


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    (The plain safe loader silently keeps the last value.)
    """

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: the mapping's own keys may override merged ones
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise _DuplicateKey(key, lines[key], line)
                lines[key] = line
            except TypeError:
                continue  # an unhashable key: the base class reports it
        return super().construct_mapping(node, deep)


def _parse(text: str):
    """YAML text -> Python values (safe types only), refusing duplicate keys."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a safe loader


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A PyYAML error on one line, with its line and column where known."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{error.problem}{where}"
    return " ".join(str(error).split())


def read_config_file(path: str | Path) -> dict:
    """The mapping a YAML config file holds (an empty file: {}); else ConfigError naming it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory, not a YAML file")
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not a YAML text file (byte {error.start} is not UTF-8 text)"
        ) from None
    try:
        values = _parse(text)
    except _DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a config: nested too deeply") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys to values, got a {type(values).__name__}"
        )
    return values


def parse_overrides(overrides: list[str]) -> dict:
    """`["key=value", ...]` -> {key: YAML value}; a malformed override names itself."""
    values = {}
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {override!r}: expected key=value")
        try:
            values[key.strip()] = _parse(text) if text.strip() else None
        except _DuplicateKey as error:
            raise ConfigError(f"--set {override!r}: {error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(
                f"--set {override!r}: value is not valid YAML: {_yaml_problem(error)}"
            ) from None
        except RecursionError:
            raise ConfigError(f"--set {override!r}: nested too deeply") from None
    return values
