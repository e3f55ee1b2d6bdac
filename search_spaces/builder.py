"""Config → ``torch.nn.Module``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nas.common.errors import UserError
from nas.search_spaces.config import ArchConfig
from nas.search_spaces.network import ResNet


def build_model(config: ArchConfig | Mapping[str, Any] | str | Path, device: torch.device | str | None = None, *,
                resolution: int | None = None, classes: int | None = None,
                weights: str | os.PathLike[str] | None = None) -> ResNet:
    """Build the exact network a config describes (trainable, ``channels_last``-safe,
    ``torch.compile``-able and ONNX-exportable).

    ``config`` is an :class:`ArchConfig`, a plain dict, a preset name or a config file (``nas
    export``'s output included), as ``timm.create_model`` takes a name. ``resolution`` and
    ``classes`` override the config's input and head (``classes=10`` for the weights of a search
    that trained on ten classes). ``weights`` loads a state_dict file (``nas train``'s
    ``weights.pt``, ``nas export --weights``). ``device="meta"`` builds it without memory, which
    is how tests measure large networks cheaply.
    """
    from nas.search_spaces.registry import resolve_config

    config = resolve_config(config)
    if resolution is not None or classes is not None:
        config = config.with_input(resolution=resolution, classes=classes)
    if device is None:
        model = ResNet(config)
    else:
        with torch.device(device):
            model = ResNet(config)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a state_dict file into ``model``, or a one-line UserError saying why it does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such weights file") from None
    except Exception as exc:  # not a torch file, or a pickle that is not plain tensors
        raise UserError(f"{path}: cannot read weights ({type(exc).__name__})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise UserError(f"{path}: the weights do not fit this network ({detail[:200]}); a search's weights "
                        f"fit its training head: build_model(config, classes=N)") from None
