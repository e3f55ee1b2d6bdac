"""What can be built, and what does it cost: configs, blocks, builder, complexity, presets, spaces."""

from nas.search_spaces.builder import build_model
from nas.search_spaces.complexity import Complexity, complexity, complexity_by_part, measure
from nas.search_spaces.config import (
    ArchConfig,
    BlockOptions,
    StageConfig,
    StemConfig,
    load_config,
    parse_config,
)
from nas.search_spaces.errors import UserError
from nas.search_spaces.registry import load_preset, load_space, preset_names, resolve_config, space_names
from nas.search_spaces.space import SearchSpace

__all__ = [
    "ArchConfig", "BlockOptions", "Complexity", "StageConfig", "StemConfig", "UserError", "build_model",
    "complexity", "complexity_by_part", "load_config", "load_preset", "measure", "parse_config",
    "preset_names", "resolve_config", "SearchSpace", "load_space", "space_names",
]
