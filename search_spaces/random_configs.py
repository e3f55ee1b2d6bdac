"""Arbitrary valid configs that exercise every option, for tests and benchmarks.

Not a search space (those are the YAML files, issue "Declarative search spaces"): this
draws from everything the config format can express, including awkward widths and
odd resolutions, to check that the analytic count holds everywhere.
"""

from __future__ import annotations

import random
from typing import Any

from nas.search_spaces.config import ArchConfig

RESOLUTIONS = (1, 7, 31, 32, 33, 48, 64, 65, 96, 127, 160, 224, 225)


def _stage(rng: random.Random, width: int, card: int, gw: int, stride: int, sk: bool) -> dict[str, Any]:
    radix = 0 if sk else rng.choice((0, 0, 1, 2, 3, 4))
    if radix > 1:
        gw = -(-gw // radix) * radix  # split attention needs group_width divisible by radix
    return dict(depth=rng.randint(1, 3), width=width, cardinality=card, group_width=gw, stride=stride,
                se_ratio=rng.choice((None, None, 2, 4, 8, 16)), radix=radix, sk=sk)


def random_config(rng: random.Random) -> ArchConfig:
    """A small network with random stem, stages, attention and block options (every field varied)."""
    split_input = rng.random() < 0.3
    stages = []
    for i in range(rng.randint(1, 4)):
        card = rng.choice((1, 1, 2, 3, 4, 8))
        gw = rng.randint(1, 12)
        sk = rng.random() < 0.25
        if sk and split_input and gw % 2:
            gw += 1  # SK paths splitting the input need an even bottleneck width
        stages.append(_stage(rng, rng.randint(4, 96), card, gw, rng.choice((1, 2)) if i else 1, sk))
    stem_type = rng.choice(("basic", "deep", "cifar"))
    stem: dict[str, Any] = dict(type=stem_type, width=rng.randint(3, 48), pool=rng.choice((True, False, None)))
    if stem_type == "deep":
        stem["mid_width"] = rng.randint(2, 32)
    block = dict(avd=rng.choice(("none", "first", "last")), avg_down=rng.random() < 0.5,
                 se_divisor=rng.choice((1, 4, 8)), sk_reduction=rng.choice((4, 8, 16)),
                 sk_divisor=rng.choice((8, 16, 32)), sk_split_input=split_input,
                 split_reduction=rng.choice((2, 4)), split_divisor=rng.choice((4, 8)),
                 split_min=rng.choice((8, 16, 32)))
    return ArchConfig.model_validate(dict(
        resolution=rng.choice(RESOLUTIONS), in_channels=rng.choice((1, 3, 4)), classes=rng.randint(2, 1000),
        stem=stem, stages=stages, block=block))


def random_resnet50_sized(rng: random.Random) -> ArchConfig:
    """An ImageNet-scale candidate around ResNet-50's size: 224×224, four stages of bottlenecks
    with widths 256·2^i, ~16 blocks, and random cardinality, radix, SE and SK per stage."""
    stages = []
    for i, depth in enumerate((3, 4, 6, 3)):
        card = rng.choice((1, 2, 4, 8, 16, 32))
        gw = max(1, (64 << i) // card * rng.choice((1, 2)))
        sk = rng.random() < 0.25
        stage = _stage(rng, 256 << i, card, gw, 2 if i else 1, sk)
        stage["depth"] = max(1, depth + rng.randint(-1, 2))
        stages.append(stage)
    return ArchConfig.model_validate(dict(
        resolution=224, classes=1000, stem=dict(type=rng.choice(("basic", "deep")), width=64), stages=stages,
        block=dict(avd=rng.choice(("none", "last")), avg_down=rng.random() < 0.5)))
