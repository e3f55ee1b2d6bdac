"""nas — design-space exploration and architecture search for ResNet-family CNNs.

The public surface is small: the config type, the builder, the analytic complexity
model and the registries. Everything else is private to its part.
"""

from nas.search_spaces import (
    ArchConfig,
    Complexity,
    UserError,
    build_model,
    complexity,
    load_config,
    load_preset,
    load_space,
    preset_names,
    resolve_config,
    space_names,
)

__version__ = "0.1.0"

__all__ = [
    "ArchConfig", "Complexity", "UserError", "__version__", "build_model", "complexity", "load_config",
    "load_preset", "load_space", "preset_names", "resolve_config", "space_names",
]
