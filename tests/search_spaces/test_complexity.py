"""The analytic count equals the measured count of the built model, exactly, everywhere."""

import random

import pytest
import torch

from nas.search_spaces import build_model, complexity, complexity_by_part, load_preset, measure
from nas.search_spaces.random_configs import random_config

N_RANDOM = 240


def _random_configs():
    rng = random.Random(20261123)
    return [random_config(rng) for _ in range(N_RANDOM)]


RANDOM_CONFIGS = _random_configs()


def test_random_configs_cover_every_option():
    seen = set()
    for c in RANDOM_CONFIGS:
        seen |= {("stem", c.stem.type), ("pool", c.stem.pool), ("avd", c.block.avd), ("avg_down", c.block.avg_down),
                 ("split_input", c.block.sk_split_input), ("res", c.resolution % 2)}
        for s in c.stages:
            seen |= {("radix", min(s.radix, 2)), ("sk", s.sk), ("se", s.se_ratio is not None),
                     ("grouped", s.cardinality > 1), ("stride", s.stride)}
    expected = {("stem", t) for t in ("basic", "deep", "cifar")} | {("pool", True), ("pool", False)}
    expected |= {("avd", a) for a in ("none", "first", "last")} | {("avg_down", True), ("avg_down", False)}
    expected |= {("radix", 0), ("radix", 1), ("radix", 2), ("sk", True), ("se", True), ("grouped", True)}
    expected |= {("stride", 1), ("stride", 2), ("res", 0), ("res", 1), ("split_input", True)}
    assert expected <= seen


@pytest.mark.parametrize("index", range(N_RANDOM))
def test_analytic_equals_measured_on_random_configs(index):
    config = RANDOM_CONFIGS[index]
    model = build_model(config, device="meta")
    assert complexity(config) == measure(model, config.resolution, config.in_channels)


@pytest.mark.parametrize("resolution", [224, 225, 160, 64, 32, 17])
@pytest.mark.parametrize("name", ["resnet50", "seresnext50_32x4d", "skresnext50_32x4d", "resnest50d",
                                  "resnest50d_4s2x40d", "resnext29_4x16d"])
def test_analytic_equals_measured_on_presets_at_any_resolution(name, resolution):
    config = load_preset(name).with_input(resolution=resolution)
    assert complexity(config) == measure(build_model(config, device="meta"), resolution)


def test_meta_measurement_equals_a_real_forward():
    # The suite measures on the meta device for speed; a real CPU forward must count the same.
    config = load_preset("resnest50d").with_input(resolution=64, classes=10)
    model = build_model(config)
    assert measure(model, 64) == measure(build_model(config, device="meta"), 64)


def test_parts_add_up_to_the_total():
    config = load_preset("skresnext50_32x4d")
    parts = complexity_by_part(config)
    assert [name for name, _, _ in parts] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    total = parts[0][1]
    for _, cx, _ in parts[1:]:
        total = total + cx
    assert total == complexity(config)
    assert [side for _, _, side in parts] == [56, 56, 28, 14, 7, 7]


def test_flops_scale_with_resolution_but_params_do_not():
    small = complexity(load_preset("resnet50").with_input(resolution=112))
    big = complexity(load_preset("resnet50"))
    assert small.params == big.params
    assert 3.5 < big.flops / small.flops < 4.5


def test_counting_does_not_change_the_models_mode():
    model = build_model(load_preset("resnext29_4x16d"), device="meta")
    model.train()
    measure(model, 32)
    assert model.training
    assert not any(isinstance(p, torch.Tensor) and p.device.type != "meta" for p in model.parameters())
