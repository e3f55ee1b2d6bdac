"""The bridge to Optuna: a space's parameters asked of a trial under their readable names.

``suggest_config(trial, space)`` is a define-by-run function: every parameter of the
space (``stage2.depth``, ``radix``, ``width.base`` …) is suggested with the matching
distribution (categorical for lists, int with step, log-int), so any Optuna sampler
(TPE, NSGA-II, random, GP) sees the real design parameters and importances mean
something. ``config_from_params(space, trial.params)`` rebuilds the exact config from a
finished trial's stored parameters.
"""

from __future__ import annotations

from typing import Any

from nas.search_spaces.config import ArchConfig
from nas.search_spaces.space import Param, SearchSpace


def _suggest(trial: Any, p: Param) -> Any:
    if p.choices is not None:
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.log:
        return trial.suggest_int(p.name, p.low, p.high, log=True)
    return trial.suggest_int(p.name, p.low, p.high, step=p.step)


def suggest_values(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for every parameter of the space; returns the values by name."""
    return {name: _suggest(trial, p) for name, p in space.params.items()}


def suggest_config(trial: Any, space: SearchSpace) -> ArchConfig | None:
    """The trial's candidate, or ``None`` when the suggested combination is not a valid network
    (the caller records that as an infeasible trial rather than crashing the study)."""
    return space.try_decode(suggest_values(trial, space))


def config_from_params(space: SearchSpace, params: dict[str, Any]) -> ArchConfig:
    """Rebuild the exact config from a trial's ``params`` (raises UserError if they are not the space's)."""
    return space.decode({name: params[name] for name in space.params if name in params})


def distributions(space: SearchSpace) -> dict[str, Any]:
    """The Optuna distributions of the space's parameters (for ``study.enqueue_trial``/``add_trial``)."""
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for name, p in space.params.items():
        if p.choices is not None:
            out[name] = d.CategoricalDistribution(list(p.choices))
        else:
            out[name] = d.IntDistribution(p.low, p.high, log=p.log, step=1 if p.log else p.step)
    return out
