"""Optuna sees the real design parameters, and a finished trial rebuilds the exact config."""

import optuna
import pytest

from nas.search_spaces import load_preset
from nas.search_spaces.optuna_bridge import config_from_params, distributions, suggest_config
from nas.search_spaces.registry import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _samplers():
    yield optuna.samplers.TPESampler(seed=0)
    yield optuna.samplers.RandomSampler(seed=0)
    yield optuna.samplers.NSGAIISampler(seed=0, population_size=4)
    yield optuna.samplers.GPSampler(seed=0, n_startup_trials=3)  # needs scipy and torch: both dependencies


@pytest.mark.parametrize("sampler", list(_samplers()), ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("space_name", ["resnest", "resnext-cifar"])
def test_round_trip_params_to_config_to_same_hash(sampler, space_name):
    space = load_space(space_name)
    study = optuna.create_study(sampler=sampler, directions=["minimize"])
    hashes = {}

    def objective(trial):
        config = suggest_config(trial, space)
        hashes[trial.number] = config.arch_hash()
        return float(sum(s.depth for s in config.stages))

    study.optimize(objective, n_trials=6)
    for trial in study.trials:
        assert set(trial.params) == set(space.params)
        assert config_from_params(space, trial.params).arch_hash() == hashes[trial.number]


def test_trial_distributions_match_the_space():
    space = load_space("resnest")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: float(suggest_config(t, space).stages[2].depth), n_trials=1)
    trial = study.trials[0]
    assert trial.distributions == distributions(space)
    assert trial.distributions["stage3.depth"].choices == (2, 4, 6, 9, 12, 18, 23)
    assert "stage3.depth" in trial.params and "radix" in trial.params and "width.base" in trial.params


def test_int_and_log_int_ranges_use_int_distributions():
    from nas.search_spaces.space import parse_space_text

    space = parse_space_text("""
base: {resolution: 32, classes: 10, stem: {type: cifar, width: 16}}
stages: 2
choices:
  depth: {low: 1, high: 3}
  width: {base: {low: 16, high: 64, step: 16}, growth: 2}
  group_width: {low: 2, high: 16, log: true}
""", "ranges.yaml")
    d = distributions(space)
    assert isinstance(d["stage1.depth"], optuna.distributions.IntDistribution)
    assert d["width.base"].step == 16 and d["stage2.group_width"].log
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    study.optimize(lambda t: float(suggest_config(t, space).stages[0].group_width), n_trials=5)
    for trial in study.trials:
        assert config_from_params(space, trial.params).stages[0].group_width == trial.params["stage1.group_width"]


FAMILY_PRESETS = {"resnet": "resnet50", "resnext": "resnext50_32x4d", "seresnext": "seresnext50_32x4d",
                  "sknet": "skresnext50_32x4d", "resnest": "resnest50d"}


@pytest.mark.parametrize("name, preset_name", sorted(FAMILY_PRESETS.items()))
def test_a_preset_can_be_enqueued_as_a_trial(name, preset_name):
    space, preset = load_space(name), load_preset(preset_name)
    study = optuna.create_study()
    study.enqueue_trial(space.encode(preset))
    study.optimize(lambda t: float(suggest_config(t, space).arch_hash() == preset.arch_hash()), n_trials=1)
    assert study.trials[0].value == 1.0
