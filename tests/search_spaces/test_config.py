"""The config is a typed, validated value that round-trips through YAML and JSON unchanged."""

import json
import random

import pydantic
import pytest
import yaml

from nas.search_spaces import ArchConfig, UserError, load_config, load_preset, parse_config, preset_names
from nas.search_spaces.random_configs import random_config

SMALL = {"stages": [{"depth": 2, "width": 64, "cardinality": 4, "group_width": 4}]}


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip_yaml_and_json(name):
    c = load_preset(name)
    assert ArchConfig.from_yaml(c.to_yaml()) == c
    assert ArchConfig.from_json(c.to_json()) == c
    assert ArchConfig.from_yaml(c.to_yaml()).to_yaml() == c.to_yaml()


def test_random_configs_round_trip():
    rng = random.Random(1)
    for _ in range(100):
        c = random_config(rng)
        assert ArchConfig.from_yaml(c.to_yaml()) == c
        assert ArchConfig.from_json(c.to_json()) == c
        assert ArchConfig.from_json(c.to_json()).arch_hash() == c.arch_hash()


def test_defaults_are_resolved_and_explicit_after_a_round_trip():
    c = parse_config({"stem": {"type": "deep"}, "stages": [SMALL["stages"][0]] * 3})
    assert [s.stride for s in c.stages] == [1, 2, 2]
    assert c.stem.mid_width == 32 and c.stem.pool is True
    assert parse_config({"stem": {"type": "cifar"}, **SMALL}).stem.pool is False
    data = yaml.safe_load(c.to_yaml())
    assert data["stages"][1]["stride"] == 2 and data["stem"]["pool"] is True


def test_hash_identifies_the_architecture_not_the_label():
    a = parse_config({**SMALL, "name": "a"})
    b = parse_config({**SMALL, "name": "b"})
    assert a.arch_hash() == b.arch_hash()
    assert a.arch_hash() != a.with_input(resolution=64).arch_hash()
    assert a.arch_hash() != parse_config({**SMALL, "block": {"avg_down": True}}).arch_hash()


def test_load_config_reads_yaml_and_json_files(tmp_path):
    c = load_preset("resnest50d")
    (tmp_path / "a.yaml").write_text(c.to_yaml())
    (tmp_path / "a.json").write_text(c.to_json())
    assert load_config(tmp_path / "a.yaml") == c == load_config(tmp_path / "a.json")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["stages"][0].update(depth=-1), "stages.0.depth"),
    (lambda d: d["stages"][0].update(depth=0), "stages.0.depth"),
    (lambda d: d["stages"][0].update(colour="red"), "stages.0.colour"),
    (lambda d: d.update(widht=3), "widht"),
    (lambda d: d["stages"][0].update(width="64"), "stages.0.width"),
    (lambda d: d["stages"][0].update(group_width=4.5), "stages.0.group_width"),
    (lambda d: d["stages"][0].update(cardinality=0), "stages.0.cardinality"),
    (lambda d: d["stages"][0].update(stride=3), "stages.0.stride"),
    (lambda d: d["stages"][0].update(radix=2, group_width=3), "stages.0"),
    (lambda d: d["stages"][0].update(radix=2, sk=True), "stages.0"),
    (lambda d: d["stages"][0].update(se_ratio=0), "stages.0.se_ratio"),
    (lambda d: d.update(stem={"type": "fancy"}), "stem.type"),
    (lambda d: d.update(stem={"type": "basic", "mid_width": 8}), "stem"),
    (lambda d: d.update(block={"avd": "middle"}), "block.avd"),
    (lambda d: d.update(stages=[]), "stages"),
    (lambda d: d.update(resolution=0), "resolution"),
    (lambda d: d.update(classes=True), "classes"),
])
def test_invalid_configs_are_refused_naming_the_field(mutate, field):
    data = json.loads(json.dumps(SMALL))
    mutate(data)
    with pytest.raises(UserError) as err:
        parse_config(data, source="my.yaml")
    message = str(err.value)
    assert message.startswith(f"my.yaml: {field}")
    assert "\n" not in message


def test_sk_split_input_needs_cardinality_dividing_half_the_width():
    data = {"stages": [{"depth": 1, "width": 64, "cardinality": 4, "group_width": 3, "sk": True}],
            "block": {"sk_split_input": True}}
    with pytest.raises(UserError, match="stages.0"):
        parse_config(data)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages:\n  - {depth: 1, width: [3, group_width: 4}\n")
    with pytest.raises(UserError, match=r"bad.yaml: line 2: malformed YAML"):
        load_config(path)


@pytest.mark.parametrize("text, message", [("", "empty"), ("- 1\n- 2\n", "expected a mapping"),
                                           ("just a string", "expected a mapping")])
def test_non_mapping_documents_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        ArchConfig.from_yaml(text)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_immutable():
    c = parse_config(SMALL)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        c.resolution = 3
