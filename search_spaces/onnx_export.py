"""A built network as an ONNX graph: the one export both ``nas export --onnx`` (``nas/export.py``) and the
deployment latency of a search (``workers/deployment_latency.py``) use, so the graph a search times is the
graph a user takes away.

The graph takes ``float32`` images ``(batch, channels, resolution, resolution)`` with a dynamic batch
dimension (one file serves batch 1 and a throughput batch) and is exported by the dynamo exporter
(``torch.onnx.export(..., dynamo=True)``) in eval mode.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nas.common.errors import UserError

__all__ = ["export_onnx"]


def export_onnx(model: nn.Module, path: Path, resolution: int, in_channels: int = 3) -> list[Path]:
    """Write ``model`` (put in eval mode) as an ONNX graph at ``path``; returns the files written: the
    graph, and its weights file beside it when they are too large for one protobuf (2 GB)."""
    model = model.eval()
    x = torch.randn(1, in_channels, resolution, resolution)
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    before = set(path.parent.iterdir())
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False, external_data=external,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    except ImportError as exc:
        raise UserError(f"an ONNX export needs the onnx and onnxscript packages ({exc})") from None
    return sorted(set(path.parent.iterdir()) - before)
