"""nas — design-space exploration and architecture search for ResNet-family CNNs.

The public surface is small: the config type, the builder, the analytic complexity model and
the registries. Everything else is private to its part. Names are imported on first use, so the
command line starts without importing PyTorch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_PUBLIC = ("ArchConfig", "Complexity", "UserError", "build_model", "complexity", "load_config", "load_preset",
           "load_space", "preset_names", "resolve_config", "space_names")

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    from nas import search_spaces

    value = getattr(search_spaces, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
