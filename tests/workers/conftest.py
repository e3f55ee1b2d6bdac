"""Shared fixtures for the workers tests: one shapes dataset per session, small models.

The shapes set is generated once per session into a temporary cache (never the user's
``~/.cache/nas``); training tests use small slices of it so the suite stays fast on 2 cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.workers.datasets import DatasetSplits, load_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on the 2-vCPU CI machines a second OpenMP thread makes small ops
    10-100x slower whenever the other vCPU is busy (measured), and these tests run small models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(nn.Module):
    """A small plain CNN: learns shapes above chance within an epoch or two on a CPU."""

    def __init__(self, classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("nas_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("NAS_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def shapes(session_cache: Path) -> DatasetSplits:
    """The full default shapes dataset (20k train / 5k val), generated once."""
    return load_dataset("shapes")


@pytest.fixture(scope="session")
def small_shapes(shapes: DatasetSplits) -> DatasetSplits:
    """A slice for training tests."""
    return shapes.take(3000, 500)


@pytest.fixture
def tiny_net() -> Callable[..., nn.Module]:
    """Factory: ``tiny_net(seed=0, classes=10, width=16)`` -> a freshly initialised TinyNet."""

    def make(seed: int = 0, classes: int = 10, width: int = 16) -> nn.Module:
        torch.manual_seed(seed)
        return TinyNet(classes=classes, width=width)

    return make
