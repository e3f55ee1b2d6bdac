"""Config → ``torch.nn.Module``."""

from __future__ import annotations

import torch

from nas.search_spaces.config import ArchConfig
from nas.search_spaces.network import ResNet


def build_model(config: ArchConfig, device: torch.device | str | None = None) -> ResNet:
    """Build the exact network a config describes (trainable, ``channels_last``-safe,
    ``torch.compile``-able and ONNX-exportable). ``device="meta"`` builds it without memory,
    which is how tests measure large networks cheaply."""
    if device is None:
        return ResNet(config)
    with torch.device(device):
        return ResNet(config)
