"""Built networks train, and survive channels_last, torch.compile and ONNX export, for every block type."""

import pytest
import torch

from nas.search_spaces import build_model, parse_config

BLOCKS = {
    "resnext": {},
    "se": {"se_ratio": 4},
    "sk": {"sk": True},
    "split-radix1": {"radix": 1},
    "split-radix2": {"radix": 2},
}


def tiny(block: str, **block_options) -> dict:
    stage = {"cardinality": 2, "group_width": 8, **BLOCKS[block]}
    return {"resolution": 32, "classes": 5, "stem": {"type": "cifar", "width": 16},
            "stages": [{"depth": 2, "width": 32, **stage}, {"depth": 1, "width": 64, **stage}],
            "block": {"sk_divisor": 8, "split_min": 8, **block_options}}


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("avd", ["none", "first", "last"])
def test_forward_backward_and_a_training_step_lowers_the_loss(block, avd):
    torch.manual_seed(0)
    model = build_model(parse_config(tiny(block, avd=avd, avg_down=avd != "none")))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("block", BLOCKS)
def test_channels_last_gives_the_same_output(block):
    torch.manual_seed(0)
    model = build_model(parse_config(tiny(block))).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


def test_torch_compile_matches_eager():
    """Every block traces into one graph (fullgraph: no graph break) and the compiled network
    computes what the eager one does. The AOT-eager backend runs the same capture as inductor
    without its C++ code generation, which on a 2-core CPU took 50 s of this test."""
    torch.manual_seed(0)
    config = parse_config({**tiny("split-radix2"), "stages": [
        {"depth": 1, "width": 32, "cardinality": 2, "group_width": 8, "radix": 2, "se_ratio": 4},
        {"depth": 1, "width": 32, "cardinality": 2, "group_width": 8, "sk": True}]})
    model = build_model(config).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-4)


@pytest.mark.parametrize("block", BLOCKS)
def test_onnx_export_runs_and_matches(block, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = build_model(parse_config(tiny(block, avd="last", avg_down=True))).eval()
    x = torch.randn(1, 3, 32, 32)
    program = torch.onnx.export(model, (x,), tmp_path / "m.onnx", dynamo=True)
    assert (tmp_path / "m.onnx").stat().st_size > 0
    import onnx

    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))
    with torch.no_grad():
        ref = model(x)
    out = program.call_reference(x) if hasattr(program, "call_reference") else program(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert torch.allclose(torch.as_tensor(out), ref, atol=1e-4)


def test_build_model_takes_what_a_user_has(tmp_path):
    """A config, a dict, a preset name or a file, as timm.create_model takes a name; with overrides."""
    from nas.search_spaces import load_preset, resolve_config

    config = load_preset("resnext11_2x8d")
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml())
    built = [build_model(x, device="meta") for x in (config, config.to_dict(), "resnext11_2x8d", str(path), path)]
    assert len({sum(p.numel() for p in m.parameters()) for m in built}) == 1
    assert build_model("resnext11_2x8d", classes=3).config.classes == 3
    with_prov = parse_config({**config.to_dict(), "provenance": {"study": "s", "trial": 4}})
    assert with_prov.arch_hash() == config.arch_hash()  # provenance is not architecture
    assert resolve_config(with_prov.to_dict()).provenance == {"study": "s", "trial": 4}


def test_weights_that_do_not_fit_are_one_line(tmp_path):
    from nas.common.errors import UserError

    model = build_model("resnext11_2x8d")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    again = build_model("resnext11_2x8d", weights=tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(UserError, match="do not fit this network") as info:
        build_model("resnext11_2x8d", classes=3, weights=tmp_path / "w.pt")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such weights file"):
        build_model("resnext11_2x8d", weights=tmp_path / "nope.pt")
