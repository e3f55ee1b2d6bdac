"""One registry: a name resolves to a preset file shipped in ``presets/``; a path to the user's file.

Adding a preset means adding a YAML file, not editing code.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from nas.search_spaces.config import ArchConfig, load_config
from nas.search_spaces.errors import UserError

_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def _preset_files() -> dict[str, resources.abc.Traversable]:
    root = resources.files("nas.search_spaces.presets")
    return {f.name.rsplit(".", 1)[0]: f for f in root.iterdir() if f.name.endswith(".yaml")}


def preset_names() -> list[str]:
    """Names of the shipped reference presets, sorted."""
    return sorted(_preset_files())


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


def resolve_config(name_or_path: str | Path) -> ArchConfig:
    """A preset name, or a path to a YAML/JSON config file."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in _CONFIG_SUFFIXES or path.exists() or "/" in text:
        if not path.exists():
            raise UserError(f"{text}: no such file")
        return load_config(path)
    return load_preset(text)
