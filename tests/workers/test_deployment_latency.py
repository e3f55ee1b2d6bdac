"""Deployment latency: the deployed network on a named runtime, with its spread and a reference timed
interleaved. The machine is shared and noisy, so the tests check relations (a deeper network of the same
blocks is slower than a shallower one, relative to the reference timed beside each), never absolute times."""

from __future__ import annotations

import json

import pytest

from nas.common.errors import UserError
from nas.workers.contract import LatencyPlan, parse_latency_ms, parse_runtime
from nas.workers.deployment_latency import DeployedLatency, check_runtime, measure_deployed

pytest.importorskip("onnxruntime")


def _config(depth: int = 1, resolution: int = 32, classes: int = 5) -> dict:
    return {"resolution": resolution, "classes": classes, "stem": {"type": "cifar", "width": 16},
            "stages": [{"depth": 1, "width": 32, "group_width": 8, "stride": 1},
                       {"depth": depth, "width": 64, "group_width": 16, "stride": 2}]}


def _check_record(r: DeployedLatency, runtime: str, resolution: int, batches: tuple[int, ...]) -> None:
    assert r.runtime == runtime and r.runtime_version and r.device == "cpu" and r.device_name
    assert r.threads == 1 and r.dtype == "float32" and r.resolution == resolution and r.reference
    assert [p.batch_size for p in r.points] == list(batches)
    for p in r.points:
        assert 0 < p.min_ms <= p.p25_ms <= p.median_ms <= p.p75_ms and p.repeats >= 5
        assert p.spread == pytest.approx((p.p75_ms - p.p25_ms) / p.median_ms)
        assert p.reference_ms is not None and p.reference_ms > 0
        assert p.images_per_s == pytest.approx(p.batch_size / (p.median_ms / 1e3))
    json.dumps(r.to_dict())
    assert DeployedLatency.from_dict(r.to_dict()) == r


def test_onnxruntime_times_a_built_network_and_the_file_nas_export_writes(tmp_path):
    from nas.export import stage_onnx
    from nas.search_spaces import build_model, parse_config

    config = parse_config(_config())
    built = measure_deployed(build_model(config), runtime="onnxruntime", batch_sizes=(1, 4))
    _check_record(built, "onnxruntime", 32, (1, 4))
    assert built.classes == 5
    # The graph 'nas export --onnx' writes (stage_onnx): the same runtime reads it, at batch 1 and a
    # throughput batch (its batch dimension is dynamic), and knows its input size and classes from it.
    staged = stage_onnx(config, tmp_path / "stage", tmp_path / "net.onnx", None, 5)
    onnx_file = staged[0][0]
    exported = measure_deployed(onnx_file, runtime="onnxruntime", batch_sizes=(1, 4))
    _check_record(exported, "onnxruntime", 32, (1, 4))
    assert exported.classes == 5
    # The same network, the same runtime: the same order of time relative to the reference.
    rel = [r.at(1).median_ms / r.at(1).reference_ms for r in (built, exported)]
    assert max(rel) / min(rel) < 3, rel
    with pytest.raises(UserError, match="onnxruntime runtime"):
        measure_deployed(onnx_file, runtime="torch")
    with pytest.raises(UserError, match="no such file"):
        measure_deployed(tmp_path / "missing.onnx", runtime="onnxruntime")
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(UserError, match="ONNX Runtime cannot load it"):
        measure_deployed(tmp_path / "broken.onnx", runtime="onnxruntime")


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_deeper_network_of_the_same_blocks_is_slower(runtime):
    """Each network is timed interleaved with the reference: their ratios are compared, so a machine
    that slows down between the two measurements does not decide the outcome."""
    shallow = measure_deployed(_config(depth=1), runtime=runtime, batch_sizes=(1,))
    deep = measure_deployed(_config(depth=6), runtime=runtime, batch_sizes=(1,))
    _check_record(deep, runtime, 32, (1,))
    ratio = [r.at(1).median_ms / r.at(1).reference_ms for r in (shallow, deep)]
    assert ratio[1] > 1.2 * ratio[0], (shallow.describe(), deep.describe())


def test_the_deployed_network_is_timed_at_the_resolution_asked():
    small = measure_deployed(_config(), batch_sizes=(1,))
    large = measure_deployed(_config(), resolution=64, classes=1000, batch_sizes=(1,))
    assert (small.resolution, large.resolution, large.classes) == (32, 64, 1000)
    # four times the pixels: slower, relative to the reference timed at each size
    assert large.at(1).median_ms > small.at(1).median_ms


def test_user_mistakes_are_one_line():
    with pytest.raises(UserError, match="unknown latency runtime 'tflite'"):
        parse_runtime("tflite", "cpu")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        parse_runtime("onnxruntime:tpu", "cpu")
    assert parse_runtime("ONNXRuntime", "cpu") == ("onnxruntime", "cpu")
    assert parse_runtime("torch-compile:cuda", "cpu") == ("torch-compile", "cuda")
    assert [parse_latency_ms(t) for t in ("8ms", "8", "0.5s", "800us", "2.5 ms")] == [8, 8, 500, 0.8, 2.5]
    for bad in ("0", "-3ms", "fast", "8 parsecs", "nan", "inf"):
        with pytest.raises(UserError, match="--max-latency"):
            parse_latency_ms(bad)
    with pytest.raises(UserError, match="latency batch sizes"):
        measure_deployed(_config(), batch_sizes=(0,))


def test_a_cuda_runtime_without_a_gpu_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for runtime in ("torch", "torch-compile"):
        with pytest.raises(UserError, match="no CUDA device"):
            check_runtime(runtime, "cuda")
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        check_runtime("onnxruntime", "cuda")


def test_a_runtime_not_installed_says_how_to_install_it(monkeypatch):
    """The one stand-in of these tests: this environment has onnxruntime installed (the project's
    extras install it), so its absence is what find_spec answers for a machine without it."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(UserError, match=r"not installed; install it with: pip install onnxruntime") as err:
        check_runtime("onnxruntime", "cpu")
    assert "\n" not in str(err.value)


def test_latency_plan_round_trips():
    plan = LatencyPlan("onnxruntime", "cpu", 2, (1, 8), 8.0)
    assert LatencyPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan and plan.label == "onnxruntime:cpu"


@pytest.mark.slow
def test_torch_compile_times_the_compiled_network():
    """torch.compile compiles each batch size (static shapes): about a minute and a half here."""
    r = measure_deployed(_config(), runtime="torch-compile", batch_sizes=(1,))
    _check_record(r, "torch-compile", 32, (1,))
