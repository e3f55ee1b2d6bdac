"""The ResNet-family network: stem → stages of bottlenecks → global pool → linear head.

``ResNet(config)`` builds it; ``ResNet.complexity(config)`` counts it without building,
walking the same structure through each block's static ``complexity``. All blocks of a
stage after the first are identical (same input/output width, stride 1, same size),
so the walk costs one first block and one repeated block per stage, whatever the depth.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from nas.search_spaces.blocks import (
    Bottleneck,
    Cx,
    conv2d,
    conv2d_cx,
    linear_cx,
    norm2d,
    norm2d_cx,
    pool_cx,
    se_channels,
    sk_channels,
    split_channels,
)
from nas.search_spaces.config import ArchConfig, StageConfig


@dataclass(frozen=True)
class Complexity:
    """Cost of a network at batch 1: params, FLOPs (multiply-adds) and activations."""

    params: int
    flops: int
    activations: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: Complexity) -> Complexity:
        return Complexity(self.params + other.params, self.flops + other.flops,
                          self.activations + other.activations)


class BlockArgs(NamedTuple):
    """Arguments shared by a stage's blocks, in ``Bottleneck``'s positional order (a tuple, because
    the complexity walk unpacks it twice per stage and keyword unpacking is its largest cost)."""

    cardinality: int
    group_width: int
    se_rd: int | None
    radix: int
    sk_rd: int | None
    split_rd: int | None
    sk_split_input: bool
    avd: str
    avg_down: bool


def block_args(config: ArchConfig, stage: StageConfig) -> BlockArgs:
    """A stage's block arguments, with attention widths resolved from the block options."""
    b = config.block
    mid = stage.cardinality * stage.group_width
    return BlockArgs(
        stage.cardinality,
        stage.group_width,
        se_channels(stage.width, stage.se_ratio, b.se_divisor) if stage.se_ratio else None,
        stage.radix,
        sk_channels(mid, b.sk_reduction, b.sk_divisor) if stage.sk else None,
        (split_channels(mid, stage.radix, stage.cardinality, b.split_reduction, b.split_divisor, b.split_min)
         if stage.radix else None),
        b.sk_split_input,
        b.avd,
        b.avg_down,
    )


class ResNet(nn.Module):
    """A network described by an :class:`ArchConfig` (module names follow timm/torchvision)."""

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.config = config
        stem = config.stem
        if stem.type == "deep":
            mid = stem.mid_width or 1
            self.conv1: nn.Module = nn.Sequential(
                conv2d(config.in_channels, mid, 3, 2), norm2d(mid), nn.ReLU(inplace=True),
                conv2d(mid, mid, 3), norm2d(mid), nn.ReLU(inplace=True),
                conv2d(mid, stem.width, 3))
        elif stem.type == "basic":
            self.conv1 = conv2d(config.in_channels, stem.width, 7, 2)
        else:
            self.conv1 = conv2d(config.in_channels, stem.width, 3, 1)
        self.bn1 = norm2d(stem.width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem.pool else nn.Identity()
        cin = stem.width
        self.stage_names: list[str] = []
        for i, stage in enumerate(config.stages):
            args = block_args(config, stage)
            blocks = [Bottleneck(cin if j == 0 else stage.width, stage.width, stage.stride if j == 0 else 1, *args)
                      for j in range(stage.depth)]
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            cin = stage.width
        self.num_features = cin
        self.fc = nn.Linear(cin, config.classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            # Zero-init the last BN of each residual branch: every block starts as identity,
            # which trains deep candidates stably from the first step (Goyal et al.).
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean((2, 3)))

    # ---- analytic cost ------------------------------------------------------------------------------
    @staticmethod
    def complexity(config: ArchConfig, parts: list[tuple[str, Complexity, int]] | None = None) -> Complexity:
        """Exact params/FLOPs/activations of ``ResNet(config)``; ``parts`` collects
        ``(name, cost, output side)`` of the stem, every stage and the head."""
        cx = Cx(config.resolution)
        stem = config.stem
        if stem.type == "deep":
            mid = stem.mid_width or 1
            conv2d_cx(cx, config.in_channels, mid, 3, 2, bn=True)
            conv2d_cx(cx, mid, mid, 3, bn=True)
            conv2d_cx(cx, mid, stem.width, 3)
        elif stem.type == "basic":
            conv2d_cx(cx, config.in_channels, stem.width, 7, 2)
        else:
            conv2d_cx(cx, config.in_channels, stem.width, 3, 1)
        norm2d_cx(cx, stem.width)
        if stem.pool:
            pool_cx(cx, 3, 2, 1)
        mark = _mark(parts, "stem", cx, (0, 0, 0)) if parts is not None else (0, 0, 0)
        cin = stem.width
        for i, stage in enumerate(config.stages):
            args = block_args(config, stage)
            _add_block(cx, cin, stage.width, stage.stride, args, 1)
            if stage.depth > 1:
                _add_block(cx, stage.width, stage.width, 1, args, stage.depth - 1)
            if parts is not None:
                mark = _mark(parts, f"layer{i + 1}", cx, mark)
            cin = stage.width
        linear_cx(cx, cin, config.classes)
        if parts is not None:
            _mark(parts, "head", cx, mark)
        return Complexity(cx.params, cx.flops, cx.acts)


@functools.lru_cache(maxsize=1 << 16)
def _block_cost(cin: int, cout: int, stride: int, size: int, args: BlockArgs) -> tuple[int, int, int, int]:
    """One block's (flops, params, acts, output side). Memoised: the candidates of a search space
    share most of their blocks, so a sampler checking thousands of them counts each block once."""
    cx = Cx(size)
    Bottleneck.complexity(cx, cin, cout, stride, *args)
    return cx.flops, cx.params, cx.acts, cx.size


def _add_block(cx: Cx, cin: int, cout: int, stride: int, args: BlockArgs, times: int) -> None:
    flops, params, acts, size = _block_cost(cin, cout, stride, cx.size, args)
    cx.flops += times * flops
    cx.params += times * params
    cx.acts += times * acts
    cx.size = size


def _mark(parts: list[tuple[str, Complexity, int]], name: str, cx: Cx,
          before: tuple[int, int, int]) -> tuple[int, int, int]:
    now = cx.counts()
    parts.append((name, Complexity(now[1] - before[1], now[0] - before[0], now[2] - before[2]), cx.size))
    return now
