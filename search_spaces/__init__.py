"""What can be built, and what does it cost: configs, blocks, builder, complexity, presets, spaces.

Names are imported on first use (PEP 562), so ``nas --help`` and the commands that never build a
network do not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_model": "builder",
    "Complexity": "complexity_model", "complexity": "complexity_model", "complexity_by_part": "complexity_model",
    "measure": "complexity_model",
    "ArchConfig": "config", "BlockOptions": "config", "StageConfig": "config", "StemConfig": "config",
    "load_config": "config", "parse_config": "config",
    "UserError": "nas.common.errors",
    "load_preset": "registry", "load_space": "registry", "preset_names": "registry", "resolve_config": "registry",
    "space_names": "registry",
    "SearchSpace": "space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = _EXPORTS[name]
    value = getattr(importlib.import_module(where if "." in where else f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
