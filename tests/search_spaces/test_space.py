"""The space format: built-in spaces, a user's own file, validation with key and line."""

import textwrap

import pytest

from nas.search_spaces import UserError, complexity, load_preset
from nas.search_spaces.registry import load_space, space_names
from nas.search_spaces.sampler import flops_range
from nas.search_spaces.space import parse_space_text

FAMILY_PRESETS = {"resnet": "resnet50", "resnext": "resnext50_32x4d", "seresnext": "seresnext50_32x4d",
                  "sknet": "skresnext50_32x4d", "resnest": "resnest50d"}
CIFAR = ["resnext-cifar", "resnest-cifar"]

USER_SPACE = """\
name: tiny
base:
  resolution: 32
  classes: 10
  stem: {type: cifar, width: 16}
stages: 2
choices:
  depth: {per_stage: [[1, 2], {low: 1, high: 3}]}
  width: {base: [32, 64], growth: 2}
  cardinality: [1, 2]
  group_width: {low: 4, high: 16, step: 4}
  radix: {low: 1, high: 2, log: true}
ties: [radix]
constraints:
  - non_decreasing: depth
"""


def test_built_in_spaces_cover_every_family():
    assert set(FAMILY_PRESETS) | set(CIFAR) <= set(space_names())


@pytest.mark.parametrize("space, preset", sorted(FAMILY_PRESETS.items()))
def test_each_imagenet_space_contains_its_reference_preset(space, preset):
    sp = load_space(space)
    config = load_preset(preset)
    values = sp.encode(config)
    assert values is not None
    assert sp.decode(values).arch_hash() == config.arch_hash()
    lo, hi, exact = flops_range(sp)
    assert exact and lo <= complexity(config).flops <= hi


@pytest.mark.parametrize("name", sorted(FAMILY_PRESETS) + CIFAR)
def test_spaces_have_their_declared_shape(name):
    sp = load_space(name)
    cifar = name in CIFAR
    assert sp.num_stages == (3 if cifar else 4)
    assert sp.base["resolution"] == (32 if cifar else 224)
    assert sp.count() > 1000


def test_a_preset_outside_the_space_is_not_a_point():
    assert load_space("resnet").encode(load_preset("resnext50_32x4d")) is None
    assert load_space("resnest").encode(load_preset("resnest50d").with_input(resolution=160)) is None


def test_user_space_parameters_and_names():
    sp = parse_space_text(USER_SPACE, "tiny.yaml")
    assert list(sp.params) == ["stage1.depth", "stage2.depth", "width.base", "stage1.cardinality",
                               "stage2.cardinality", "stage1.group_width", "stage2.group_width", "radix"]
    assert tuple(sp.params["stage2.depth"].values) == (1, 2, 3)
    assert tuple(sp.params["stage1.group_width"].values) == (4, 8, 12, 16)
    assert sp.params["radix"].log
    config = sp.decode({"stage1.depth": 1, "stage2.depth": 3, "width.base": 32, "stage1.cardinality": 2,
                        "stage2.cardinality": 1, "stage1.group_width": 8, "stage2.group_width": 4, "radix": 2})
    assert [s.width for s in config.stages] == [32, 64]
    assert [s.radix for s in config.stages] == [2, 2]
    assert [s.stride for s in config.stages] == [1, 2]


def test_count_is_exact_under_constraints():
    sp = parse_space_text(USER_SPACE, "tiny.yaml")
    # non-decreasing depth pairs from [1,2] x [1,2,3]: (1,1) (1,2) (1,3) (2,2) (2,3) = 5
    assert sp.count() == 5 * 2 * 2 * 2 * 4 * 4 * 2
    import itertools
    brute = 0
    for combo in itertools.product(*(p.values for p in sp.params.values())):
        values = dict(zip(sp.params, combo))
        brute += sp.satisfies_constraints(sp.stage_values(values))
    assert brute == sp.count()


def test_constraint_violations_are_refused_by_decode():
    sp = parse_space_text(USER_SPACE, "tiny.yaml")
    values = {name: p.values[0] for name, p in sp.params.items()} | {"stage1.depth": 2, "stage2.depth": 1}
    with pytest.raises(UserError, match="constraints"):
        sp.decode(values)
    assert sp.try_decode(values) is None


def _error(text: str) -> str:
    with pytest.raises(UserError) as err:
        parse_space_text(textwrap.dedent(text), "my.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("edit, expected", [
    (("stages: 2", "stages: two"), "my.yaml: line 6: stages: must be the number of stages"),
    (("  cardinality: [1, 2]", "  cardinalty: [1, 2]"), "my.yaml: line 10: choices.cardinalty: unknown stage field"),
    (("  radix: {low: 1, high: 2, log: true}", "  radix: {low: 1, high: 2, lg: true}"),
     "my.yaml: line 12: choices.radix.lg: unknown key"),
    (("  group_width: {low: 4, high: 16, step: 4}", "  group_width: {low: 16, high: 4}"),
     "my.yaml: line 11: choices.group_width: a range needs"),
    (("  width: {base: [32, 64], growth: 2}", "  width: {base: [32, 64], growth: -1}"),
     "my.yaml: line 9: choices.width.growth: must be a positive number"),
    (("  depth: {per_stage: [[1, 2], {low: 1, high: 3}]}", "  depth: {per_stage: [[1, 2]]}"),
     "my.yaml: line 8: choices.depth.per_stage: needs one entry per stage (2)"),
    (("  - non_decreasing: depth", "  - sorted: depth"), "my.yaml: line 15: constraints.0.sorted: unknown constraint"),
    (("ties: [radix]", "ties: [colour]"), "my.yaml: line 13: ties: must be a list of stage fields"),
    (("  classes: 10", "  classes: ten"), "my.yaml: line 4: base.classes: Input should be a valid integer"),
    (("  classes: 10", "  clases: 10"), "my.yaml: line 4: base.clases: unknown key"),
    (("  cardinality: [1, 2]", "  cardinality: []"), "my.yaml: line 10: choices.cardinality: empty list"),
    (("name: tiny", "name: tiny\nbudget: 4G"), "my.yaml: line 2: budget: unknown key"),
])
def test_validation_names_the_key_and_line(edit, expected):
    assert _error(USER_SPACE.replace(*edit)).startswith(expected)


def test_a_space_that_can_never_be_valid_is_refused():
    # every group width is odd, every radix is 2: group_width must be divisible by radix
    text = USER_SPACE.replace("group_width: {low: 4, high: 16, step: 4}", "group_width: [3, 5]").replace(
        "radix: {low: 1, high: 2, log: true}", "radix: 2")
    assert "no combination of choices gives a valid network" in _error(text)
    assert "divisible by radix" in _error(text)


def test_missing_required_field_and_malformed_yaml():
    assert "choices.depth: missing" in _error(USER_SPACE.replace(
        "  depth: {per_stage: [[1, 2], {low: 1, high: 3}]}\n", ""))
    assert "malformed YAML" in _error("stages: [1, 2\n")


def test_unknown_space_name_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'resnest'"):
        load_space("resnestt")


def test_user_space_file_loads_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(USER_SPACE)
    assert load_space(str(path)).name == "tiny"
    with pytest.raises(UserError, match="no such file"):
        load_space(str(tmp_path / "other.yaml"))


@pytest.mark.parametrize("edit, expected", [
    (("  cardinality: [1, 2]", "  cardinality: [null, 2]"),
     "line 10: choices.cardinality: cardinality must be an integer"),
    (("  cardinality: [1, 2]", "  cardinality: [1, \"2\"]"), "cardinality must be an integer >= 1, got '2'"),
    (("  cardinality: [1, 2]", "  cardinality: [true, 2]"), "cardinality must be an integer >= 1, got True"),
    (("  cardinality: [1, 2]", "  cardinality: [1, 2.5]"), "got 2.5"),
    (("  cardinality: [1, 2]", "  cardinality: [1, 2]\n  sk: [false, \"yes\"]"), "sk must be true or false"),
    (("  cardinality: [1, 2]", "  cardinality: [1, 2]\n  se_ratio: [null, x]"), "se_ratio must be null or an integer"),
    (("  width: {base: [32, 64], growth: 2}", "  width: {base: \"16\", growth: 2}"), "choices.width.base: width must"),
    (("  group_width: {low: 4, high: 16, step: 4}", "  group_width: {low: 4, high: 15, step: 4}"),
     "step 4 does not divide high - low"),
    (("  group_width: {low: 4, high: 16, step: 4}", "  group_width: {low: 0, high: 16, step: 4}"),
     "a range needs 1 <= low"),
    (("stages: 2", "stages: 2\nstrides: [1, true]"), "strides: must be a list of 2 strides"),
])
def test_choice_values_are_type_checked(edit, expected):
    assert expected in _error(USER_SPACE.replace(*edit))


def test_decode_refuses_values_outside_the_space():
    sp = load_space("resnest")
    values = sp.encode(load_preset("resnest50d"))
    for bad in ({"radix": 8}, {"stage1.depth": 99}, {"radix": True}):
        with pytest.raises(UserError, match="is not one of its choices"):
            sp.decode({**values, **bad})


def test_non_integer_growth_round_trips():
    text = USER_SPACE.replace("width: {base: [32, 64], growth: 2}", "width: {base: [10, 21], growth: 1.5}")
    sp = parse_space_text(text, "g.yaml")
    values = {name: p.values[0] for name, p in sp.params.items()} | {"width.base": 21}
    config = sp.decode(values)
    assert [s.width for s in config.stages] == [21, 32]  # 31.5 rounds half up
    assert sp.encode(config) == values


def test_a_huge_integer_range_stays_lazy():
    text = USER_SPACE.replace("width: {base: [32, 64], growth: 2}", "width: {low: 16, high: 1600000000, step: 16}")
    sp = parse_space_text(text, "big.yaml")
    assert len(sp.params["stage1.width"].values) == 100_000_000
    assert sp.count() > 10**16


def test_width_matching_the_input_makes_the_range_an_estimate():
    # stage 1 (stride 1) may keep the stem's 64 channels and lose its projection shortcut, so the
    # widest choice is not the most expensive: the range must not be claimed exact.
    text = USER_SPACE.replace("stem: {type: cifar, width: 16}", "stem: {type: cifar, width: 64}").replace(
        "width: {base: [32, 64], growth: 2}", "width: {per_stage: [[48, 64], 128]}")
    sp = parse_space_text(text, "w.yaml")
    assert not sp.flops_monotone()
    assert flops_range(sp)[2] is False
