"""One registry: a name resolves to a file shipped in ``presets/`` (configs) or ``spaces/`` (search
spaces); a path resolves to the user's own file. Adding a preset or a space means adding a YAML
file, not editing code.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from nas.common.errors import UserError
from nas.search_spaces.config import ArchConfig, load_config, parse_config
from nas.search_spaces.space import SearchSpace, load_space_file, parse_space_text

_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def _shipped(package: str) -> dict[str, resources.abc.Traversable]:
    root = resources.files(package)
    return {f.name.rsplit(".", 1)[0]: f for f in root.iterdir() if f.name.endswith(".yaml")}


def _preset_files() -> dict[str, resources.abc.Traversable]:
    return _shipped("nas.search_spaces.presets")


def preset_names() -> list[str]:
    """Names of the shipped reference presets, sorted."""
    return sorted(_preset_files())


def space_names() -> list[str]:
    """Names of the built-in search spaces, sorted."""
    return sorted(_shipped("nas.search_spaces.spaces"))


def _is_path(text: str) -> bool:
    return Path(text).suffix in _CONFIG_SUFFIXES or Path(text).exists() or "/" in text


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space name, or a path to the user's own space file."""
    text = str(name_or_path)
    if _is_path(text):
        return load_space_file(text)
    files = _shipped("nas.search_spaces.spaces")
    if text not in files:
        raise unknown_name_error("space", text, sorted(files))
    return parse_space_text(files[text].read_text(), f"space {text}")


def unknown_name_error(kind: str, name: str, known: list[str]) -> UserError:
    """The one-line error for a name that is neither a known entry nor a file."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    return UserError(f"unknown {kind} {name!r} (not a {kind} name nor an existing file){hint}")


def load_preset(name: str) -> ArchConfig:
    files = _preset_files()
    if name not in files:
        raise unknown_name_error("preset", name, sorted(files))
    return ArchConfig.from_yaml(files[name].read_text(), source=f"preset {name}")


def resolve_config(source: ArchConfig | Mapping[str, Any] | str | Path) -> ArchConfig:
    """A config from what a user has at hand, as ``timm.create_model`` takes a name: an
    :class:`ArchConfig`, a plain dict, a preset name, or a path to a YAML/JSON config file."""
    if isinstance(source, ArchConfig):
        return source
    if isinstance(source, Mapping):
        return parse_config(dict(source), source="config dict")
    text = str(source)
    if _is_path(text):
        return load_config(text)
    return load_preset(text)
