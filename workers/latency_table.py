"""A per-block latency table: OFA's lookup-table idea, for this project's blocks.

A network is its stem, its bottleneck blocks and its head. Every distinct part -- a block by its input
and output widths, stride, input map size and block arguments (cardinality, group width, SE, radix, SK,
avd, avg-down), the stem by its config and input size, the head by its width and classes -- is timed
once per device, runtime and thread count (batch 1, on the same runtime as the whole network,
:func:`~nas.workers.deployment_latency.measure_deployed`) and kept in a JSON file named by them
(:func:`table_path`). A network's latency is then predicted as the sum over its parts (a stage's
repeated block counted ``depth - 1`` times) plus an overhead fitted on networks measured whole: the
median of (measured - sum), which takes in what a sum of parts misses (the calls between them, the
runtime's per-graph cost, fusion across part boundaries).

Nothing is built to predict: :func:`parts` walks the config as the analytic complexity model does.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.common.files import atomic_write
from nas.search_spaces.config import ArchConfig
from nas.search_spaces.network import block_args

__all__ = ["LatencyTable", "parts", "table_path"]


def parts(config: ArchConfig) -> list[tuple[str, int]]:
    """The network's distinct parts as table keys, each with how many times it occurs."""
    from nas.search_spaces.complexity_model import complexity_by_part

    sides = [side for _, _, side in complexity_by_part(config)]  # stem, layer1..N, head: output sides
    stem = config.stem.model_dump()
    out = [(json.dumps(["stem", stem, config.in_channels, config.resolution], sort_keys=True), 1)]
    cin, size = config.stem.width, sides[0]
    for i, stage in enumerate(config.stages):
        args = list(block_args(config, stage))
        out.append((json.dumps(["block", cin, stage.width, stage.stride, size, args]), 1))
        if stage.depth > 1:
            out.append((json.dumps(["block", stage.width, stage.width, 1, sides[i + 1], args]), stage.depth - 1))
        cin, size = stage.width, sides[i + 1]
    out.append((json.dumps(["head", cin, config.classes, size]), 1))
    return out


def _module(key: str) -> tuple[Any, int, int]:
    """(module, input channels, input side) of a table key."""
    import torch
    from torch import nn

    from nas.search_spaces.blocks import Bottleneck
    from nas.search_spaces.builder import build_model
    from nas.search_spaces.config import parse_config

    kind, *rest = json.loads(key)
    if kind == "block":
        cin, cout, stride, size, args = rest
        return Bottleneck(cin, cout, stride, *args), cin, size
    if kind == "stem":
        stem, in_channels, resolution = rest
        net = build_model(parse_config({"resolution": resolution, "in_channels": in_channels, "classes": 1,
                                        "stem": stem, "stages": [{"depth": 1, "width": 8, "group_width": 8,
                                                                   "stride": 1}]}, source="stem"))
        return nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool), in_channels, resolution
    cin, classes, size = rest

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(cin, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean((2, 3)))

    return Head(), cin, size


def table_path(folder: Path, runtime: str, device_name: str, threads: int) -> Path:
    """``FOLDER/latency-<runtime>-<device>-<threads>t.json``, the device's name made a file name."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")[:60] or "device"
    return folder / f"latency-{runtime}-{slug}-{threads}t.json"


@dataclass
class LatencyTable:
    """Part latencies (ms at batch 1) for one runtime, device and thread count, and the fitted overhead."""

    runtime: str
    device: str
    threads: int
    entries: dict[str, float] = field(default_factory=dict)
    overhead_ms: float = 0.0
    path: Path | None = None

    @classmethod
    def open(cls, folder: Path, runtime: str, device: str = "cpu", threads: int = 1) -> LatencyTable:
        """The table kept for this runtime, device and thread count in ``folder`` (empty when new)."""
        from nas.workers.deployment_latency import device_name

        path = table_path(folder, runtime, device_name(device), threads)
        table = cls(runtime, device, threads, path=path)
        try:
            data = json.loads(path.read_text())
            entries = {str(k): float(v) for k, v in dict(data["entries"]).items()}
            table.entries, table.overhead_ms = entries, float(data.get("overhead_ms", 0.0))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # A cache, and it is written whole (atomically): a file that does not read (cut short by a full
            # disk, edited by hand) is timed again and replaced, never a crash.
            table.entries, table.overhead_ms = {}, 0.0
        return table

    def save(self) -> None:
        if self.path is None:
            return
        from nas.workers.deployment_latency import device_name

        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"runtime": self.runtime, "device": self.device, "device_name": device_name(self.device),
                           "threads": self.threads, "overhead_ms": self.overhead_ms, "entries": self.entries},
                          indent=0)
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def missing(self, config: ArchConfig) -> list[str]:
        return [k for k, _ in parts(config) if k not in self.entries]

    def fill(self, config: ArchConfig, **timing: Any) -> int:
        """Time the parts of ``config`` the table lacks (each once, alone, at batch 1); returns how many."""
        from nas.workers.deployment_latency import measure_deployed

        todo = self.missing(config)
        for key in todo:
            module, cin, size = _module(key)
            r = measure_deployed(module, runtime=self.runtime, device=self.device, threads=self.threads,
                                 batch_sizes=(1,), resolution=size, in_channels=cin, reference=False, **timing)
            self.entries[key] = r.at(1).median_ms
        if todo:
            self.save()
        return len(todo)

    def sum_ms(self, config: ArchConfig) -> float | None:
        """The sum over the network's parts, or None when a part is not in the table."""
        total = 0.0
        for key, count in parts(config):
            if key not in self.entries:
                return None
            total += count * self.entries[key]
        return total

    def predict(self, config: ArchConfig) -> float | None:
        """Predicted latency at batch 1 (ms): the sum over parts plus the fitted overhead."""
        s = self.sum_ms(config)
        return None if s is None else s + self.overhead_ms

    def fit(self, measured: Sequence[tuple[ArchConfig, float]]) -> float:
        """Fit the overhead on networks measured whole: the median of measured - sum (robust to the odd
        noisy measurement). Returns it."""
        gaps = [ms - s for cfg, ms in measured if (s := self.sum_ms(cfg)) is not None]
        if gaps:
            self.overhead_ms = statistics.median(gaps)
            self.save()
        return self.overhead_ms
