"""Analytic complexity of a config, without building a model, and its measured twin.

``complexity(config)`` is exact: it equals ``measure(build_model(config))`` — params of
``model.parameters()``, FLOPs as ``FlopCounterMode`` total / 2 (multiply-adds of convs
and linears), activations as output elements of convs and linears — for every block
type at every input resolution. ``measure`` exists so tests and benchmarks can check it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.common.units import format_flops
from nas.search_spaces.config import ArchConfig
from nas.search_spaces.network import Complexity, ResNet

__all__ = ["Complexity", "complexity", "complexity_by_part", "format_flops", "measure"]


def complexity(config: ArchConfig) -> Complexity:
    """Params, FLOPs (multiply-adds) and activations of the network, at batch 1."""
    return ResNet.complexity(config)


def complexity_by_part(config: ArchConfig) -> list[tuple[str, Complexity, int]]:
    """The same count split into ``stem``, ``layer1``…``layerN`` and ``head``, each with the
    side of its output feature map."""
    parts: list[tuple[str, Complexity, int]] = []
    ResNet.complexity(config, parts)
    return parts


def measure(model: nn.Module, resolution: int, in_channels: int = 3) -> Complexity:
    """Count a built model by running it: on the meta device when the model lives there
    (no memory, no arithmetic), otherwise on its own device, batch 1, eval mode."""
    param = next(model.parameters())
    x = torch.empty(1, in_channels, resolution, resolution, device=param.device, dtype=param.dtype)
    acts = 0

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        nonlocal acts
        acts += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params=params, flops=counter.get_total_flops() // 2, activations=acts)
