"""A config that fits timm's ResNet is timm's ResNet: same tensors in order, params, FLOPs and outputs;
the printed call builds it; a config that does not fit says why in one line, naming the field."""

import random

import pytest
import torch
from pydantic import ValidationError

from nas.search_spaces import (
    ArchConfig,
    BlockOptions,
    StageConfig,
    StemConfig,
    build_model,
    load_preset,
    load_space,
    measure,
    preset_names,
    space_names,
)
from nas.search_spaces.sampler import sample
from nas.search_spaces.timm_equivalent import TimmEquivalent, timm_equivalent

pytest.importorskip("timm")

CIFAR_PRESETS = {"resnext11_2x8d", "resnext29_4x16d", "resnext29_8x64d"}
FITTING_PRESETS = sorted(set(preset_names()) - CIFAR_PRESETS)
# One preset per block kind / stem / avd placement; the small random configs below cover the rest.
OUTPUT_PRESETS = ["resnet50d", "seresnext50_32x4d", "skresnext50_32x4d", "resnest50d", "resnest50d_4s2x40d"]
RESOLUTION = 48  # odd feature maps from the second stage on: exercises ceil-mode avg_down and padding


@pytest.fixture(autouse=True)
def _one_thread():
    # The suite shares a small machine; one thread keeps every comparison cheap and deterministic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- checks ---------------------------------------------------------------------------------------


def _fits(config: ArchConfig) -> TimmEquivalent:
    eq = timm_equivalent(config)
    assert isinstance(eq, TimmEquivalent), eq
    return eq


def _shapes(model: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in model.state_dict().values()]


def _timm_on_meta(eq: TimmEquivalent) -> torch.nn.Module:
    with torch.device("meta"):
        return eq.build()


def _exec_call(eq: TimmEquivalent) -> torch.nn.Module:
    namespace: dict = {}
    with torch.device("meta"):
        exec(eq.call(), namespace)
    return namespace["model"]


def assert_same_structure(config: ArchConfig, eq: TimmEquivalent) -> None:
    """Same tensor shapes in the same order, same params / FLOPs / activations (meta device), and the
    printed call builds the same model."""
    ours = build_model(config, device="meta")
    theirs = _timm_on_meta(eq)
    assert _shapes(theirs) == _shapes(ours)
    assert measure(theirs, config.resolution, config.in_channels) == measure(ours, config.resolution,
                                                                              config.in_channels)
    assert _shapes(_exec_call(eq)) == _shapes(ours)


def assert_same_outputs(config: ArchConfig, eq: TimmEquivalent, resolution: int = RESOLUTION) -> None:
    """Ours with random weights and norm statistics, its tensors loaded into timm's by position: the
    same logits in eval mode."""
    torch.manual_seed(0)
    ours = build_model(config).eval()
    with torch.no_grad():
        # Randomise every norm layer (ours zero-inits the last BN of each block) so every branch counts.
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    theirs = _timm_on_meta(eq)  # built without memory or init: it receives ours' tensors
    theirs.load_state_dict(dict(zip(theirs.state_dict(), (t.clone() for t in ours.state_dict().values()))),
                           assign=True)
    theirs.eval()
    x = torch.randn(2, config.in_channels, resolution, resolution)
    with torch.no_grad():
        expected = ours(x)
        torch.testing.assert_close(theirs(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def _fields(reason: str) -> list[str]:
    """The config fields a reason names: ``"stem.type: ...; stages: ..."`` → ``["stem.type", "stages"]``."""
    return [part.split(":")[0] for part in reason.split("; ")]


def _is_config_field(field: str) -> bool:
    """``stages``, ``stem.<f>``, ``stages.*.<f>``, ``block.<f>[/<f>...]``: fields of the config types."""
    if field == "stages":
        return True
    kind, _, names = field.partition(".")
    model = {"stem": StemConfig, "stages": StageConfig, "block": BlockOptions}.get(kind)
    names = names.removeprefix("*.") if kind == "stages" else names
    return model is not None and all(n in model.model_fields for n in names.split("/"))


def assert_reason(config: ArchConfig, field: str) -> str:
    """Does not fit, says why on one line, names ``field`` among real config fields."""
    reason = timm_equivalent(config)
    assert isinstance(reason, str), f"expected no fit because of {field}"
    assert "\n" not in reason and field in _fields(reason), reason
    assert all(_is_config_field(f) for f in _fields(reason)), reason
    return reason


# ---- presets ----------------------------------------------------------------------------------------


def test_every_imagenet_preset_fits_and_the_cifar_ones_do_not():
    fits = {n for n in preset_names() if isinstance(timm_equivalent(load_preset(n)), TimmEquivalent)}
    assert fits == set(FITTING_PRESETS)


@pytest.mark.parametrize("name", sorted(CIFAR_PRESETS))
def test_cifar_presets_name_their_stem_and_stage_count(name):
    reason = assert_reason(load_preset(name), "stem.type")
    assert "stages" in _fields(reason)


@pytest.mark.parametrize("name", FITTING_PRESETS)
def test_preset_equivalent_has_the_same_structure(name):
    config = load_preset(name)
    assert_same_structure(config, _fits(config))


@pytest.mark.parametrize("name", OUTPUT_PRESETS)
def test_preset_equivalent_computes_the_same_outputs(name):
    config = load_preset(name).with_input(classes=10)
    assert_same_outputs(config, _fits(config), resolution=64)


def test_calls_read_like_timm_s_own_definitions():
    assert _fits(load_preset("seresnext50_32x4d")).call() == (
        "from timm.models.resnet import ResNet, Bottleneck\n\n"
        "model = ResNet(\n"
        "    block=Bottleneck, layers=[3, 4, 6, 3], channels=(64, 128, 256, 512), cardinality=32,\n"
        "    base_width=4, stem_type='', stem_width=64, avg_down=False, block_args=dict(attn_layer='se'),\n"
        "    in_chans=3, num_classes=1000,\n"
        ")")
    resnest = _fits(load_preset("resnest50d_4s2x40d"))
    assert resnest.block == "ResNestBottleneck"
    assert {k: resnest.kwargs[k] for k in ("cardinality", "base_width", "stem_type", "stem_width", "avg_down")} == \
        dict(cardinality=2, base_width=40, stem_type="deep", stem_width=32, avg_down=True)
    assert resnest.kwargs["block_args"] == dict(radix=4, avd=True, avd_first=True)
    sk = _fits(load_preset("skresnext50_32x4d")).call()
    assert "from timm.models.sknet import SelectiveKernelBottleneck" in sk
    assert "sk_kwargs=dict(rd_ratio=1 / 16, rd_divisor=32, split_input=False)" in sk


# ---- random networks that fit ---------------------------------------------------------------------------


def _fitting_config(rng: random.Random, kind: str, radix: int) -> ArchConfig:
    """A small network timm's ResNet can express, every mapped option varied: block kind (plain, SE,
    SK, split attention, plain with avd), attention widths, stem, avd, avg_down, cardinality, uneven
    stage widths, and group widths from an integer or decimal base width."""
    while True:
        card = rng.choice((1, 2, 4, 8))
        base_width = rng.choice((16, 24, 32, 40, 64, 96, 13.5, 21.3, 42.7))
        sk = kind.startswith("sk")
        se_ratio = rng.choice((2, 4, 8, 16)) if kind == "se" or (sk and rng.random() < 0.5) else None
        if rng.random() < 0.3:
            # Widths 192 or 320 x 2^i (as in the built-in spaces): group widths then need a decimal base width.
            planes = [rng.choice((48, 80)) << i for i in range(4)]
            base_width = rng.choice((2.7, 4.5, 5.3, 10.7))
        else:
            planes = [rng.choice((4, 6, 8, 12, 16))]
            for _ in range(3):
                planes.append(planes[-1] * rng.choice((1, 2, 2, 3)) // rng.choice((1, 1, 2)) or 1)
        stages = [dict(depth=rng.randint(1, 2), width=4 * p, cardinality=card, stride=2 if i else 1, radix=radix,
                       group_width=int(p * (base_width / 64)), sk=sk, se_ratio=se_ratio)
                  for i, p in enumerate(planes)]
        mid = rng.choice((8, 12, 16, 32))
        stem = dict(type="basic", width=64) if rng.random() < 0.5 else dict(type="deep", mid_width=mid, width=2 * mid)
        avd = rng.choice(("first", "last")) if kind == "avd" else rng.choice(("none", "first", "last"))
        block = dict(avd=avd if kind in ("split", "avd") else "none", avg_down=rng.random() < 0.5,
                     se_divisor=rng.choice((1, 4, 8)), sk_reduction=rng.choice((4, 8, 16)),
                     sk_divisor=rng.choice((8, 16, 32)), sk_split_input=kind == "sk_split")
        try:
            config = ArchConfig.model_validate(dict(resolution=RESOLUTION, in_channels=rng.choice((1, 3)),
                                                    classes=rng.randint(2, 20), stem=stem, stages=stages,
                                                    block=block))
        except ValidationError:
            continue  # zero group width, radix not dividing it, odd SK split: draw again
        if all(s.group_width >= 1 for s in config.stages):
            return config


# Block kinds in turn, so every one is covered whatever the seed.
KINDS = [("plain", 0), ("se", 0), ("sk", 0), ("sk_split", 0), ("split", 1), ("split", 2), ("split", 4), ("avd", 0)]


def _random_fitting_configs(n: int = 32, seed: int = 7) -> list[ArchConfig]:
    rng = random.Random(seed)
    return [_fitting_config(rng, *KINDS[i % len(KINDS)]) for i in range(n)]


FITTING = _random_fitting_configs()


def test_random_fitting_configs_cover_every_block_and_option():
    eqs = [_fits(c) for c in FITTING]
    seen = {e.block for e in eqs} | {type(e.kwargs["base_width"]).__name__ for e in eqs}
    seen |= {("radix", e.kwargs.get("block_args", {}).get("radix")) for e in eqs}
    seen |= {("stem", c.stem.type) for c in FITTING} | {("avd", c.block.avd) for c in FITTING}
    seen |= {("split_input", c.block.sk_split_input) for c in FITTING if c.stages[0].sk}
    seen |= {("se", c.stages[0].se_ratio is not None, c.stages[0].sk) for c in FITTING}
    assert {"Bottleneck", "ResNestBottleneck", "SelectiveKernelBottleneck", "int", "float"} <= seen
    assert {("radix", r) for r in (0, 1, 2, 4)} <= seen
    assert {("stem", "basic"), ("stem", "deep"), ("avd", "none"), ("avd", "first"), ("avd", "last")} <= seen
    assert {("split_input", True), ("split_input", False), ("se", True, False), ("se", True, True)} <= seen
    assert any(isinstance(e.kwargs.get("block_args", {}).get("attn_layer"), str) for e in eqs)  # 'se'
    assert any("partial(SEModule" in e.call() for e in eqs)


@pytest.mark.parametrize("index", range(len(FITTING)))
def test_random_fitting_config_is_timm_s_resnet(index):
    config = FITTING[index]
    eq = _fits(config)
    assert_same_structure(config, eq)
    assert_same_outputs(config, eq)


# ---- search-space candidates ------------------------------------------------------------------------------


def _candidates(space: str, n: int = 40) -> list[ArchConfig]:
    return [c.config for c in sample(load_space(space), high=3e9, n=n, seed=11).candidates]


def _uniform(config: ArchConfig, field: str) -> bool:
    return len({getattr(s, field) for s in config.stages}) == 1


# What decides whether a built-in space's candidate fits timm's ResNet, and the field named when not.
SPACE_RULES = {
    "resnet": (lambda c: True, None),
    "resnext": (lambda c: True, None),  # decimal base widths where stage widths are 192 or 320 x 2^i
    "seresnext": (lambda c: _uniform(c, "se_ratio"), "stages.*.se_ratio"),  # the ratio is chosen per stage
    "resnest": (lambda c: all(s.se_ratio is None for s in c.stages), "stages.*.se_ratio"),  # no SE in ResNeSt
    "sknet": (lambda c: _uniform(c, "sk"), "stages.*.sk"),  # SK is switched per stage
    "resnest-cifar": (lambda c: False, "stem.type"),  # 3x3/1 stem, three stages
    "resnext-cifar": (lambda c: False, "stem.type"),
}


def test_every_space_has_a_rule():
    assert set(SPACE_RULES) == set(space_names())


@pytest.mark.parametrize("space", sorted(SPACE_RULES))
def test_which_space_candidates_fit(space):
    fits, field = SPACE_RULES[space]
    for config in _candidates(space):
        if fits(config):
            _fits(config)
        else:
            assert_reason(config, field)


@pytest.mark.parametrize("space", ["resnet", "resnext", "resnest", "sknet"])
def test_fitting_space_candidates_are_timm_s_resnet(space):
    fitting = [c for c in _candidates(space) if isinstance(timm_equivalent(c), TimmEquivalent)]
    assert fitting, f"no candidate of {space} fits"
    config = fitting[0].with_input(classes=10)
    eq = _fits(config)
    assert_same_structure(config, eq)
    assert_same_outputs(config, eq, resolution=32)


# ---- configs that do not fit ------------------------------------------------------------------------------------


def _small() -> dict:
    return dict(resolution=32, stem=dict(type="basic", width=64),
                stages=[dict(depth=1, width=64 << i, cardinality=2, group_width=8 << i, stride=2 if i else 1)
                        for i in range(4)])


def _stages(**fields):
    def apply(d):
        for i, s in enumerate(d["stages"]):
            s.update({k: v[i] if isinstance(v, list) else v for k, v in fields.items()})
    return apply


def _set(path: str, value):
    def apply(d):
        *parents, leaf = path.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return apply


MISFITS = {
    "cifar stem": (_set("stem", dict(type="cifar", width=64)), "stem.type"),
    "7x7 stem not 64 wide": (_set("stem.width", 32), "stem.width"),
    "deep stem not 2 x mid": (_set("stem", dict(type="deep", width=48, mid_width=32)), "stem.width"),
    "no stem pool": (_set("stem.pool", False), "stem.pool"),
    "three stages": (lambda d: d["stages"].pop(), "stages"),
    "stride-1 second stage": (_stages(stride=[1, 1, 2, 2]), "stages.*.stride"),
    "width not 4 x planes": (_stages(width=[64, 128, 254, 512]), "stages.*.width"),
    "cardinality per stage": (_stages(cardinality=[2, 4, 4, 4]), "stages.*.cardinality"),
    "no common base width": (_stages(group_width=[8, 16, 24, 64]), "stages.*.group_width"),
    "radix per stage": (_stages(radix=[0, 2, 2, 2]), "stages.*.radix"),
    "sk per stage": (_stages(sk=[True, False, True, True]), "stages.*.sk"),
    "se ratio per stage": (_stages(se_ratio=[16, 8, 16, 16]), "stages.*.se_ratio"),
    "se on some stages": (_stages(se_ratio=[None, 16, 16, 16]), "stages.*.se_ratio"),
    "split attention with se": (_stages(radix=2, se_ratio=16), "stages.*.se_ratio"),
    "avd with se": (lambda d: (_stages(se_ratio=16)(d), _set("block.avd", "last")(d)), "stages.*.se_ratio"),
    "sk with avd": (lambda d: (_stages(sk=True)(d), _set("block.avd", "first")(d)), "block.avd"),
    "split attention options": (lambda d: (_stages(radix=2)(d), _set("block.split_min", 8)(d)), "block.split_min"),
    "split attention cardinality": (_stages(radix=2, cardinality=3, group_width=[16, 32, 64, 128]),
                                    "stages.*.cardinality"),
    # timm computes c * (1 / r) where we compute c / r: 588 x (1 / 49) rounds to 8 SE channels, 588 / 49 to 16.
    "se float rounding": (_stages(width=588, group_width=2, se_ratio=49, cardinality=1),
                          "stages.*.se_ratio"),
    "sk float rounding": (lambda d: (_stages(sk=True, cardinality=1, width=[256, 256, 256, 256],
                                             group_width=637)(d),
                                     _set("block", dict(sk_reduction=49, sk_divisor=2))(d)), "block.sk_reduction"),
}


@pytest.mark.parametrize("name", sorted(MISFITS))
def test_a_misfit_names_its_field(name):
    mutate, field = MISFITS[name]
    data = _small()
    mutate(data)
    assert_reason(ArchConfig.model_validate(data), field)


def test_the_same_config_without_the_misfit_fits():
    # The misfits above differ from a fitting network in exactly the field named.
    assert_same_structure(ArchConfig.model_validate(_small()), _fits(ArchConfig.model_validate(_small())))


def test_several_misfits_are_all_named_on_one_line():
    data = _small()
    _set("stem", dict(type="cifar", width=64))(data)
    _stages(cardinality=[2, 4, 4, 4], stride=[1, 1, 2, 2])(data)
    reason = timm_equivalent(ArchConfig.model_validate(data))
    assert isinstance(reason, str) and "\n" not in reason
    assert _fields(reason) == ["stem.type", "stages.*.stride", "stages.*.cardinality"]
    assert "stages.*.cardinality: timm's ResNet needs one cardinality for all stages (this has 2, 4, 4, 4)" in reason
