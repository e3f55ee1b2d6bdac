"""The training engine: learning, reproducibility, failures, callback/stop, serialisation, augmentation."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from nas.common.errors import UserError
from nas.workers import engine
from nas.workers.engine import EpochRecord, Schedule, StopTraining, augment_batch, evaluate, save_weights, train

FAST = dict(batch_size=32, lr=0.05, warmup_epochs=0.2, eval_batch_size=250)


def test_trains_above_chance(small_shapes, tiny_net):
    r = train(tiny_net(), small_shapes, Schedule(epochs=2, **FAST))
    assert r.status == "ok" and r.reason is None
    assert r.epochs_completed == 2 and len(r.history) == 2 and r.steps == 2 * (3000 // 32)
    assert r.val_acc is not None and r.val_acc > 0.2, r.history  # chance is 0.1
    assert r.best_val_acc >= r.val_acc
    assert r.history[-1].train_loss < r.history[0].train_loss
    assert r.images_per_s > 0 and r.images_per_s_steady > 0 and r.wall_time_s >= r.train_time_s
    assert r.peak_memory_kind == "process_max_rss" and r.peak_memory_bytes > 0
    assert r.params == sum(p.numel() for p in r.model.parameters())
    assert next(r.model.parameters()).device.type == "cpu"


def test_seeded_runs_are_identical(small_shapes, tiny_net):
    data = small_shapes.take(640, 200)
    sch = Schedule(epochs=2, seed=3, **FAST)
    a = train(tiny_net(seed=1), data, sch)
    b = train(tiny_net(seed=1), data, sch)
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [[getattr(h, k) for k in keys] for h in a.history] == [[getattr(h, k) for k in keys] for h in b.history]
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = train(tiny_net(seed=1), data, Schedule(epochs=2, seed=4, **FAST))
    assert c.history[0].train_loss != a.history[0].train_loss  # the seed drives order and augmentation


def test_builds_from_config(small_shapes):
    from nas.search_spaces import parse_config

    cfg = parse_config({"resolution": 32, "classes": 10, "stem": {"type": "cifar", "width": 8},
                        "stages": [{"depth": 1, "width": 16, "group_width": 8, "stride": 1},
                                   {"depth": 1, "width": 32, "group_width": 8, "cardinality": 2}]})
    r = train(cfg, small_shapes.take(256, 100), Schedule(epochs=1, **FAST))
    assert r.status == "ok" and r.val_acc is not None
    with pytest.raises(UserError, match="100 classes"):
        train(cfg.with_input(classes=100), small_shapes, Schedule(epochs=1))
    with pytest.raises(UserError, match="resolution"):
        train(cfg.with_input(resolution=64), small_shapes, Schedule(epochs=1))
    # a built network carries its config: classes are checked, resolution is not (any size runs)
    from nas.search_spaces import build_model

    with pytest.raises(UserError, match="100 classes"):
        train(build_model(cfg.with_input(classes=100)), small_shapes, Schedule(epochs=1))
    r = train(build_model(cfg.with_input(resolution=64)), small_shapes.take(64, 32), Schedule(epochs=1, **FAST))
    assert r.status == "ok"


def test_huge_lr_diverges(small_shapes, tiny_net):
    sch = Schedule(epochs=3, batch_size=64, lr=1e8, warmup_epochs=0, nan_check_every=5, eval_batch_size=250)
    r = train(tiny_net(), small_shapes.take(1280, 100), sch)
    assert r.status == "diverged"
    assert "non-finite" in r.reason
    assert r.epochs_completed < 3
    assert r.steps <= 20 * r.epochs_completed + 20  # stopped within the check interval
    json.dumps(r.to_dict(), allow_nan=False)


def test_simulated_oom_is_reported_and_returns(small_shapes, tiny_net, monkeypatch):
    model = tiny_net()
    calls = {"n": 0}
    real_forward = model.forward

    def forward(x):
        calls["n"] += model.training  # training steps only, not the layout rule's eval-mode forward
        if calls["n"] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(x)

    monkeypatch.setattr(model, "forward", forward)
    r = train(model, small_shapes.take(640, 100), Schedule(epochs=2, **FAST))
    assert r.status == "oom" and "out of memory" in r.reason
    assert r.epochs_completed == 0 and r.val_acc is None and r.steps == 2
    assert all(p.grad is None for p in model.parameters())  # gradients released
    json.dumps(r.to_dict(), allow_nan=False)


def test_wrapped_oom_is_recognised(small_shapes, tiny_net, monkeypatch):
    # torch.compile re-raises backend failures with the original error as the cause
    model = tiny_net()

    def forward(x):
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as exc:
            raise RuntimeError("backend compiler failed") from exc

    monkeypatch.setattr(model, "forward", forward)
    assert train(model, small_shapes.take(128, 50), Schedule(epochs=1, **FAST)).status == "oom"


def test_other_model_errors_propagate(small_shapes, tiny_net, monkeypatch):
    model = tiny_net()

    def forward(x):
        raise ValueError("broken block")

    monkeypatch.setattr(model, "forward", forward)
    with pytest.raises(ValueError, match="broken block"):
        train(model, small_shapes.take(128, 50), Schedule(epochs=1, **FAST))
    with pytest.raises((IndexError, RuntimeError)):  # a model with too few outputs for the labels
        train(tiny_net(classes=3), small_shapes.take(128, 50), Schedule(epochs=1, **FAST))


def test_callback_sees_history_and_can_stop(small_shapes, tiny_net):
    data = small_shapes.take(256, 100)
    seen: list[EpochRecord] = []
    r = train(tiny_net(), data, Schedule(epochs=3, **FAST), on_epoch=seen.append)
    assert r.status == "ok" and seen == r.history and [h.epoch for h in seen] == [1, 2, 3]

    r = train(tiny_net(), data, Schedule(epochs=3, **FAST), on_epoch=lambda rec: rec.epoch >= 2)
    assert r.status == "stopped" and r.epochs_completed == 2 and "after epoch 2" in r.reason
    assert r.val_acc == r.history[-1].val_acc

    def prune(rec):
        raise StopTraining("pruned at epoch 1")

    r = train(tiny_net(), data, Schedule(epochs=3, **FAST), on_epoch=prune)
    assert r.status == "stopped" and r.reason == "pruned at epoch 1" and r.epochs_completed == 1

    def buggy(rec):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        train(tiny_net(), data, Schedule(epochs=2, **FAST), on_epoch=buggy)


def test_eval_every_skips_epochs_but_not_the_last(small_shapes, tiny_net):
    r = train(tiny_net(), small_shapes.take(256, 100), Schedule(epochs=3, eval_every=2, **FAST))
    assert [h.val_acc is None for h in r.history] == [True, False, False]


def test_result_json_and_weights_roundtrip(small_shapes, tiny_net, tmp_path):
    r = train(tiny_net(), small_shapes.take(256, 100), Schedule(epochs=1, **FAST),
              save_path=tmp_path / "direct.pt")
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["status"] == "ok" and "model" not in d
    assert d["schedule"]["epochs"] == 1 and d["history"][0]["epoch"] == 1
    path = r.save(tmp_path / "w" / "model.pt")
    for p in (path, tmp_path / "direct.pt"):
        state = torch.load(p, weights_only=True)
        fresh = tiny_net(seed=99)
        fresh.load_state_dict(state)
        for k, v in r.model.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], v)
    assert sorted(x.name for x in (tmp_path / "w").iterdir()) == ["model.pt"]  # no temp files left
    # a compiled wrapper is unwrapped: same keys as the plain model
    wrapper = torch.nn.Module()
    wrapper._orig_mod = r.model
    save_weights(wrapper, tmp_path / "unwrapped.pt")
    assert set(torch.load(tmp_path / "unwrapped.pt", weights_only=True)) == set(r.model.state_dict())


def test_to_dict_replaces_non_finite_floats():
    r = engine.TrainResult(status="diverged", reason="x", val_acc=None, val_loss=float("nan"), best_val_acc=None,
                           train_loss=float("inf"), train_acc=None, epochs_completed=0, epochs_planned=1, steps=1,
                           wall_time_s=0.1, train_time_s=0.0, images_per_s=None, images_per_s_steady=None,
                           peak_memory_bytes=None, peak_memory_kind=None, params=1, device="cpu", compiled=False)
    d = r.to_dict()
    assert d["val_loss"] is None and d["train_loss"] is None
    json.dumps(d, allow_nan=False)


def test_evaluate_matches_a_plain_loop(small_shapes, tiny_net):
    model = tiny_net().eval()
    x, y = small_shapes.val_x[:300], small_shapes.val_y[:300]
    acc, loss = evaluate(model, x, y, small_shapes.mean, small_shapes.std, batch_size=128)
    mean = torch.tensor(small_shapes.mean).view(1, 3, 1, 1)
    std = torch.tensor(small_shapes.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((x.float() / 255 - mean) / std)
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert loss == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-4)
    assert not model.training


def test_channels_last_on_cpu_trains_like_contiguous(small_shapes, tiny_net, monkeypatch):
    # long enough to learn (0.30 here; chance is 0.10), so equal accuracies say something
    off = train(tiny_net(), small_shapes, Schedule(epochs=2, channels_last=False, **FAST))
    monkeypatch.setattr(engine, "_cpu_channels_last", lambda model, shape: True)  # forced on
    on = train(tiny_net(), small_shapes, Schedule(epochs=2, **FAST))
    assert (off.memory_format, on.memory_format) == ("contiguous", "channels_last")
    assert on.to_dict()["memory_format"] == "channels_last"
    # a different kernel order, not a different training: same data, augmentation and schedule
    assert off.val_acc > 0.2 and on.val_acc == pytest.approx(off.val_acc, abs=0.02)
    assert on.train_loss == pytest.approx(off.train_loss, rel=0.02)
    # the model comes back in the default layout
    assert all(p.is_contiguous() for p in on.model.parameters())


def test_cpu_layout_rule_follows_the_map_sizes(small_shapes, tiny_net):
    from nas.search_spaces import build_model, parse_config

    # TinyNet at 32 px: 58% of its convolution work on 32 and 16 px maps -> channels_last
    r = train(tiny_net(), small_shapes.take(256, 100), Schedule(epochs=1, **FAST))
    assert r.memory_format == "channels_last"
    # an ImageNet-style stem (stride 4) at 32 px: maps of 8 px and less -> contiguous
    imagenet_style = build_model(parse_config({
        "resolution": 32, "classes": 10, "stem": {"type": "deep", "width": 16},
        "stages": [{"depth": 2, "width": 64, "group_width": 16, "stride": 1},
                   {"depth": 1, "width": 128, "group_width": 32}]}))
    assert not engine._cpu_channels_last(imagenet_style, (3, 32, 32))
    assert engine._cpu_channels_last(imagenet_style, (3, 128, 128))  # the same net on larger images
    # the rule leaves the model and the RNG as they were
    model = tiny_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert engine._cpu_channels_last(model, (3, 32, 32))
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # False is never, whatever the rule says
    assert train(tiny_net(), small_shapes.take(256, 100),
                 Schedule(epochs=1, channels_last=False, **FAST)).memory_format == "contiguous"


# ---------------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------------


def test_augment_is_a_padded_crop_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = augment_batch(x, 2, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(16):
        candidates = []
        for oy in range(5):
            for ox in range(5):
                crop = padded[i, :, oy:oy + 8, ox:ox + 8]
                candidates += [(crop, False), (crop.flip(-1), True)]
        matches = [f for c, f in candidates if torch.equal(c, out[i])]
        assert matches, f"sample {i} is not a crop of its padded input"
        flips += matches[0]
    assert 0 < flips < 16
    assert torch.equal(augment_batch(x, 2, torch.Generator().manual_seed(0)), out)  # seeded
    plain = augment_batch(x, 0, torch.Generator().manual_seed(1))
    assert all(torch.equal(plain[i], x[i]) or torch.equal(plain[i], x[i].flip(-1)) for i in range(16))


def test_lr_schedule_warmup_then_cosine():
    total, warm, base = 100, 10, 0.4
    lrs = [engine._lr_at(s, total, warm, base) for s in range(total)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert lrs[10] == pytest.approx(0.4) and lrs[-1] < 0.001
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert engine._lr_at(50, 100, 0, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_schedule_validation():
    with pytest.raises(UserError, match="epochs"):
        Schedule(epochs=0)
    with pytest.raises(UserError, match="lr"):
        Schedule(lr=-1)
    with pytest.raises(UserError, match="unknown key"):
        Schedule.from_dict({"epochs": 2, "learning_rate": 0.1})
    s = Schedule.from_dict(Schedule(epochs=4, lr=0.3).to_dict())
    assert s.epochs == 4 and s.lr == 0.3


def test_bad_device_and_empty_data(small_shapes, tiny_net):
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            train(tiny_net(), small_shapes, Schedule(epochs=1), device="cuda")
    with pytest.raises(UserError, match="empty"):
        train(tiny_net(), small_shapes.take(0, 10), Schedule(epochs=1))


def test_time_limit_stops_a_run_as_timeout(small_shapes, tiny_net):
    import time as _time

    def slow(record):
        _time.sleep(2.0)

    # each epoch's callback alone outlasts the limit: the run stops in its first or second epoch
    # (the first when the machine is loaded and 4 steps take longer than the limit), never ends
    result = train(tiny_net(), small_shapes.take(256, 64), Schedule(epochs=5, batch_size=64), on_epoch=slow,
                   time_limit_s=1.5)
    assert result.status == "timeout" and "time limit in epoch" in result.reason
    assert result.epochs_completed <= 1 and f"epoch {result.epochs_completed + 1}," in result.reason
