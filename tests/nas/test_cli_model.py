"""``nas model`` as a user runs it: tables, JSON, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from nas.search_spaces import complexity, load_preset


def test_model_list_shows_every_preset_with_exact_counts(cli):
    code, out, _ = cli("model", "list")
    assert code == 0
    assert "resnest50d" in out and "27,483,240" in out and "5,371,160,576" in out


def test_summary_json_has_integer_totals_equal_to_the_analytic_count(cli):
    code, out, _ = cli("model", "summary", "skresnext50_32x4d", "--json")
    data = json.loads(out)
    cx = complexity(load_preset("skresnext50_32x4d"))
    assert code == 0
    assert (data["params"], data["flops"], data["activations"]) == (cx.params, cx.flops, cx.activations)
    assert [s["depth"] for s in data["stages"]] == [3, 4, 6, 3]
    assert sum(s["flops"] for s in data["stages"]) + data["stem"]["flops"] + data["head"]["flops"] == cx.flops


def test_summary_table_and_input_overrides(cli):
    code, out, _ = cli("model", "summary", "resnest50d", "--resolution", "160", "--classes", "10")
    cx = complexity(load_preset("resnest50d").with_input(160, 10))
    assert code == 0
    assert "160x160 input, 10 classes" in out
    assert f"{cx.flops:,} FLOPs" in out
    for col in ("depth", "groups x w", "radix", "SE", "SK", "params", "FLOPs"):
        assert col in out
    assert "layer4" in out and "5x5" in out


def test_summary_of_a_users_file(cli, tmp_path):
    path = tmp_path / "mine.yaml"
    code, out, _ = cli("model", "show", "resnext29_4x16d")
    path.write_text(out.replace("cardinality: 4", "cardinality: 8"))
    code, out, _ = cli("model", "summary", str(path), "--json")
    assert code == 0 and json.loads(out)["stages"][0]["cardinality"] == 8


@pytest.mark.parametrize("argv, message", [
    (["model", "summary", "resnet5O"], "unknown preset 'resnet5O'"),
    (["model", "summary", "missing.yaml"], "missing.yaml: no such file"),
    (["model", "summary", "resnet50", "--resolution", "0"], "resolution"),
    (["model", "summary", "resnet50", "--resolution", "x"], "invalid int value"),
    (["model", "frobnicate"], "invalid choice"),
    (["model"], "required"),
])
def test_user_mistakes_get_one_error_line_and_status_2(cli, argv, message):
    code, out, err = cli(*argv)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and out == ""


def test_malformed_yaml_file(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [ {depth: 1\n")
    code, _, err = cli("model", "summary", path)
    assert code == 2
    assert err.startswith("error: ") and "malformed YAML" in err and err.count("\n") == 1


def test_console_script_version_help_and_error_exit_code():
    exe = [sys.executable, "-m", "nas.cli"]
    assert subprocess.run([*exe, "--version"], capture_output=True, text=True).stdout.startswith("nas ")
    help_text = subprocess.run([*exe, "model", "summary", "--help"], capture_output=True, text=True).stdout
    assert "--resolution" in help_text and "multiply-adds" in help_text
    bad = subprocess.run([*exe, "model", "summary", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert bad.stdout == ""
