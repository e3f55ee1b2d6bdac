"""``nas space`` as a user runs it."""

import json

import pytest

from nas.search_spaces import complexity, parse_config
from nas.search_spaces.registry import space_names


def test_space_list_shows_every_space(cli):
    code, out, _ = cli("space", "list")
    assert code == 0
    for name in space_names():
        assert name in out


def test_space_show_lists_choices_count_and_flops_range(cli):
    code, out, _ = cli("space", "show", "resnest")
    assert code == 0
    assert "stage3.depth" in out and "[2, 4, 6, 9, 12, 18, 23]" in out and "radix" in out
    assert "architectures: 1,451,520" in out
    assert "818 MFLOPs (smallest) to 43.8 GFLOPs (largest)" in out
    code, out, _ = cli("space", "show", "resnest", "--json")
    data = json.loads(out)
    assert data["architectures"] == 1_451_520 and data["flops_range_exact"]
    assert data["params"]["radix"] == [1, 2, 4]


def test_space_sample_json_candidates_are_in_budget_and_rebuild(cli):
    code, out, err = cli("space", "sample", "resnest", "--budget", "3.6-4GFLOPs", "-n", "8", "--seed", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["candidates"]) == 8 and 0 < data["acceptance_rate"] <= 1
    for c in data["candidates"]:
        config = parse_config(c["config"])
        assert 3.6e9 <= complexity(config).flops == c["flops"] <= 4e9
        assert config.arch_hash() == c["hash"]


def test_space_sample_table(cli):
    code, out, _ = cli("space", "sample", "resnext-cifar", "--budget", "500M", "-n", "5")
    assert code == 0
    assert out.count("MFLOPs") >= 5 and "acceptance" in out


def test_a_users_space_file_works_end_to_end(cli, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("""
name: mine
base: {resolution: 32, classes: 10, stem: {type: cifar, width: 32}}
stages: 3
choices:
  depth: {per_stage: [[1, 2], [1, 2], [1, 2, 3]]}
  width: {base: [64, 128], growth: 2}
  cardinality: [2, 4]
  group_width: {base: [4, 8], growth: 2}
  sk: [false, true]
ties: [cardinality]
constraints: [{non_decreasing: depth}]
""")
    assert cli("space", "show", path)[0] == 0
    code, out, _ = cli("space", "sample", path, "--budget", "150M", "-n", "10", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["space"] == "mine" and len(data["candidates"]) == 10
    for c in data["candidates"]:
        depths = [s["depth"] for s in c["config"]["stages"]]
        assert depths == sorted(depths) and c["flops"] <= 150e6


@pytest.mark.parametrize("argv, message", [
    (["space", "show", "resnxt"], "unknown space 'resnxt'"),
    (["space", "sample", "resnest", "--budget", "lots"], "cannot read budget 'lots'"),
    (["space", "sample", "resnest", "--budget", "10M"], "FLOPs range from 818 MFLOPs to 43.8 GFLOPs"),
    (["space", "sample", "resnest", "--budget", "4G", "-n", "0"], "-n must be at least 1"),
    (["space", "sample", "resnest"], "--budget"),
    (["space", "show", "nope/space.yaml"], "no such file"),
])
def test_space_mistakes_get_one_error_line(cli, argv, message):
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_malformed_space_file_names_the_line(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: 2\nchoices:\n  depth: [1, 2]\n  width: [64]\n  group_width: [4]\n  colour: [red]\n")
    code, _, err = cli("space", "show", path)
    assert code == 2 and f"{path}: line 6: choices.colour: unknown stage field" in err
