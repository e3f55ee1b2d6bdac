"""Inference latency: positive, consistent numbers on the CPU, cheaply."""

from __future__ import annotations

import json

import pytest

from nas.common.errors import UserError
from nas.workers.latency import measure_latency


def test_latency_module(tiny_net):
    model = tiny_net()
    model.train()
    r = measure_latency(model, batch_sizes=(1, 16), resolution=32, warmup=1, repeats=3)
    assert [p.batch_size for p in r.points] == [1, 16]
    for p in r.points:
        assert p.median_ms > 0 and p.min_ms <= p.median_ms and p.repeats == 3
        assert p.images_per_s == pytest.approx(p.batch_size / (p.median_ms / 1e3))
    assert r.at(16).images_per_s > 0 and r.dtype == "float32" and not r.channels_last
    assert model.training  # mode restored
    json.dumps(r.to_dict())
    with pytest.raises(KeyError):
        r.at(64)


def test_latency_from_config():
    from nas.search_spaces import parse_config

    cfg = parse_config({"resolution": 24, "classes": 5, "stem": {"type": "cifar", "width": 8},
                        "stages": [{"depth": 1, "width": 16, "group_width": 8, "stride": 1}]})
    r = measure_latency(cfg, batch_sizes=(1, 8))
    assert r.resolution == 24 and all(p.median_ms > 0 for p in r.points)
    from nas.search_spaces import build_model

    # a built network's own config gives the input size
    assert measure_latency(build_model(cfg), batch_sizes=(1,), repeats=1, warmup=0).resolution == 24


def test_latency_bad_arguments(tiny_net):
    with pytest.raises(UserError):
        measure_latency(tiny_net(), batch_sizes=(0,))
    with pytest.raises(UserError):
        measure_latency(tiny_net(), repeats=0)
