"""Named presets reproduce the reference networks exactly: counts, layer shapes, and outputs."""

import pytest
import torch

from nas.search_spaces import build_model, complexity, load_preset, measure, preset_names

# The reference figures README.md quotes (Models), 1x3x224x224, 1000 classes.
REFERENCE = {
    "resnet50": (25_557_032, 4_089_184_256),
    "resnext50_32x4d": (25_028_904, 4_230_479_872),
    "seresnext50_32x4d": (27_559_896, 4_232_994_816),
    "skresnext50_32x4d": (27_479_784, 4_462_710_784),
    "resnest50d": (27_483_240, 5_371_160_576),
}

TORCHVISION = ["resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d"]
TIMM = ["resnet50d", "resnext50d_32x4d", "seresnet50", "seresnext50_32x4d", "skresnext50_32x4d", "resnest50d",
        "resnest50d_4s2x40d", "resnest50d_1s4x24d"]


def test_every_reference_network_is_a_preset():
    assert set(REFERENCE) <= set(preset_names())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_preset_matches_design_figures_to_the_unit(name):
    cx = complexity(load_preset(name))
    assert (cx.params, cx.flops) == REFERENCE[name]
    assert measure(build_model(load_preset(name), device="meta"), 224) == cx


def _reference_model(name):
    if name in TORCHVISION:
        torchvision = pytest.importorskip("torchvision")
        return getattr(torchvision.models, name)()
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False)


@pytest.mark.parametrize("name", TORCHVISION + TIMM)
def test_preset_is_the_reference_network(name):
    """Same tensors in the same order; loaded with the reference's weights, the same outputs."""
    torch.manual_seed(0)
    ref = _reference_model(name).eval()
    ours = build_model(load_preset(name)).eval()
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert [tuple(t.shape) for t in our_sd.values()] == [tuple(t.shape) for t in ref_sd.values()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    # Randomise every norm layer (libraries zero-init some) so every branch shapes the output,
    # then load the reference's tensors into ours by position.
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict(dict(zip(our_sd.keys(), ref.state_dict().values())))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", TORCHVISION + TIMM)
def test_analytic_count_matches_reference_library_model(name):
    ref = _reference_model(name)
    cx = complexity(load_preset(name))
    assert cx.params == sum(p.numel() for p in ref.parameters())
    assert cx.flops == measure(ref, 224).flops


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_and_counts_exactly(name):
    config = load_preset(name)
    assert config.name == name
    assert complexity(config) == measure(build_model(config, device="meta"), config.resolution)
