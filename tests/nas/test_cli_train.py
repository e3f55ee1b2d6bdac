"""``nas train`` as a user runs it: a short CPU run writes weights, metrics and the config."""

import json

import pytest
import torch

from nas.search_spaces import build_model, load_config


def test_train_writes_weights_metrics_and_config(cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = cli("train", "resnext11_2x8d", "--epochs", "1", "--limit", "512", "--val-limit", "300",
                            "--batch-size", "64", "--device", "cpu", "--threads", "1", "--out", out)
    assert code == 0, err
    assert "val_acc" in stdout and "resnext11_2x8d" in err
    assert "(512 train / 300 val images" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs_completed"] == 1
    assert 0 <= metrics["val_acc"] <= 1 and metrics["images_per_s"] > 0
    assert metrics["complexity"]["params"] == metrics["params"]
    assert {p["batch_size"] for p in metrics["latency"]["points"]} >= {1}
    config = load_config(out / "config.yaml")
    assert config.arch_hash() == metrics["arch_hash"]
    model = build_model(config)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--dataset", "imagefolder:/no/such/folder"], "does not exist"),
    (["--device", "cuda"], "no CUDA GPU"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--val-limit", "0"], "--val-limit must be at least 1"),
    (["--device", "tpu"], "invalid choice"),
])
def test_train_mistakes_get_one_error_line_and_write_nothing(cli, tmp_path, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    code, stdout, err = cli("train", "resnext11_2x8d", "--out", out, *argv)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_train_refuses_a_non_empty_output_folder(cli, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = cli("train", "resnext11_2x8d", "--out", tmp_path, "--epochs", "1", "--limit", "64")
    assert code == 2 and "already exists" in err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_train_refuses_data_that_cannot_fit_in_one_line(cli, tmp_path, monkeypatch):
    from nas.workers import datasets

    def boom(*a, **k):
        raise AssertionError("an image was made")

    monkeypatch.setattr(datasets, "_render_shapes", boom)
    monkeypatch.setattr(datasets, "_shapes_cached", boom)
    monkeypatch.setenv(datasets.MEMORY_LIMIT_ENV, str(2 << 30))  # 5,000 val images at 224 px fit, 5,000 more do not
    out = tmp_path / "run"
    code, stdout, err = cli("train", "resnext11_2x8d", "--resolution", "224", "--limit", "5000", "--epochs", "1",
                            "--device", "cpu", "--out", out)
    assert code == 2 and stdout == ""
    assert err.startswith("error: dataset shapes at 224x224 needs ") and err.count("\n") == 1
    assert "is available (NAS_MEMORY_LIMIT_BYTES)" in err
    assert "pass --limit " in err and "pass --resolution " in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
