"""Declarative search spaces: a YAML file a user reads and writes, turned into named parameters.

A space file has a ``base`` (everything of an :class:`ArchConfig` except the stages), a
number of ``stages``, their ``strides``, and ``choices`` for the stage fields::

    name: resnest
    base: {resolution: 224, classes: 1000, stem: {type: deep, width: 64, mid_width: 32},
           block: {avd: last, avg_down: true}}
    stages: 4
    choices:
      depth: {per_stage: [[2, 3, 4], [3, 4, 5], [4, 6, 8], [2, 3]]}   # one choice per stage
      width: {base: [192, 256, 320], growth: 2}    # one base, stage i gets base * 2**i
      cardinality: [1, 2, 4]                       # a list: each stage chooses independently...
      radix: {low: 1, high: 4, log: true}          # ...an integer range (step or log scale)
      se_ratio: [null, 16]                         # null: no squeeze-excitation
      sk: false                                    # a scalar: fixed
    ties: [cardinality, radix]                     # ...unless tied: one value for all stages
    constraints: [{non_decreasing: depth}]

Every choice becomes one named parameter (``stage2.depth``, ``radix``, ``width.base``);
:meth:`SearchSpace.decode` maps a dict of parameter values to the exact config. The
Optuna bridge and the budget sampler both go through these parameters, so an Optuna
sampler sees the real design parameters.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nas.common.errors import UserError
from nas.common.files import read_user_text, yaml_error
from nas.search_spaces.config import ArchConfig, StageConfig, error_message, parse_config

STAGE_FIELDS = ("depth", "width", "cardinality", "group_width", "se_ratio", "radix", "sk")
INT_FIELDS = ("depth", "width", "cardinality", "group_width", "radix")
MONOTONE_CONSTRAINTS = ("non_decreasing", "non_increasing")
_SPACE_KEYS = {"name", "description", "base", "stages", "strides", "choices", "ties", "constraints", "lineage"}
_RANGE_KEYS = {"low", "high", "step", "log"}


# ---- YAML with line numbers ---------------------------------------------------------------------


def _lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path of a composed YAML document to its (1-based) line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = (*path, k.value)
            out[key] = k.start_mark.line + 1
            _lines(v, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _lines(v, (*path, i), out)
    return out


class _Located:
    """Raises one-line errors that name the key and its line in the source file."""

    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source = source
        self.lines = lines

    def error(self, path: tuple, message: str) -> UserError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        where = f" line {line}:" if line else ""
        key = ".".join(str(p) for p in path)
        return UserError(f"{self.source}:{where} {key + ': ' if key else ''}{message}")


# ---- parameters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One design parameter: a categorical list, or an integer range (``step`` or ``log``)."""

    name: str
    choices: tuple | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    log: bool = False

    @property
    def values(self) -> tuple | range:
        """Every value the parameter can take, in order (a lazy ``range`` for integer ranges, which
        may be huge: ``len``, ``in``, indexing and the ends cost nothing)."""
        if self.choices is not None:
            return self.choices
        assert self.low is not None and self.high is not None
        # A log range still takes every integer in [low, high], as Optuna's log-int does.
        return range(self.low, self.high + 1, 1 if self.log else self.step)

    def contains(self, v: Any) -> bool:
        """Whether ``v`` is one of the values (``True`` is not the integer 1 here)."""
        if self.choices is not None:
            return any(v == c and type(v) is type(c) for c in self.choices)
        return type(v) is int and v in self.values

    def draw(self, rng: random.Random) -> Any:
        if self.choices is not None:
            return self.choices[rng.randrange(len(self.choices))]
        assert self.low is not None and self.high is not None
        if self.log:
            # Log-uniform over [low, high + 1), floored: what Optuna's log-int distribution does.
            return min(self.high, int(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))))
        return self.low + self.step * rng.randrange((self.high - self.low) // self.step + 1)

    def describe(self) -> str:
        if self.choices is not None:
            return "[" + ", ".join("null" if c is None else str(c).lower() for c in self.choices) + "]"
        scale = ", log" if self.log else (f", step {self.step}" if self.step != 1 else "")
        return f"{self.low}..{self.high}{scale}"


@dataclass(frozen=True)
class _Target:
    """Where a parameter's value goes: a stage field, optionally scaled by ``growth ** stage``."""

    param: str
    growth: float | None = None


@dataclass
class SearchSpace:
    """A parsed space: the fixed base, the parameters, and how they map onto stage fields."""

    name: str
    description: str
    base: dict[str, Any]
    strides: tuple[int, ...]
    params: dict[str, Param]
    fixed: dict[tuple[int, str], Any]
    targets: dict[tuple[int, str], _Target]
    constraints: tuple[tuple[str, str], ...]
    source: str = ""
    #: where a refined space came from (``nas space refine``): parent, study, accepted changes; else None
    lineage: dict[str, Any] | None = None
    _flops_range: tuple[int, int, bool] | None = field(default=None, repr=False)

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    # ---- values → config ---------------------------------------------------------------------
    def stage_values(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        stages = []
        for i, stride in enumerate(self.strides):
            stage: dict[str, Any] = {"stride": stride}
            for f in STAGE_FIELDS:
                if (i, f) in self.fixed:
                    stage[f] = self.fixed[(i, f)]
                else:
                    t = self.targets[(i, f)]
                    v = values[t.param]
                    stage[f] = v if t.growth is None else _grow(v, t.growth, i)
            stages.append(stage)
        return stages

    def satisfies_constraints(self, stages: list[dict[str, Any]]) -> bool:
        for kind, f in self.constraints:
            seq = [s[f] for s in stages]
            pairs = zip(seq, seq[1:])
            if kind == "non_decreasing" and any(a > b for a, b in pairs):
                return False
            if kind == "non_increasing" and any(a < b for a, b in pairs):
                return False
        return True

    def decode(self, values: dict[str, Any]) -> ArchConfig:
        """The exact config for a full set of parameter values; UserError if it is not a valid one."""
        missing = [p for p in self.params if p not in values]
        if missing:
            raise UserError(f"space {self.name}: missing parameter(s) {', '.join(missing)}")
        for name, p in self.params.items():
            if not p.contains(values[name]):
                raise UserError(f"space {self.name}: {name}={values[name]!r} is not one of its choices "
                                f"({p.describe()})")
        stages = self.stage_values(values)
        if not self.satisfies_constraints(stages):
            raise UserError(f"space {self.name}: parameters violate the space's constraints")
        return parse_config({**self.base, "stages": stages}, source=f"space {self.name}")

    def try_decode(self, values: dict[str, Any]) -> ArchConfig | None:
        """Like :meth:`decode` but ``None`` for a combination the space rules out (the sampler's path)."""
        stages = self.stage_values(values)
        if not self.satisfies_constraints(stages):
            return None
        try:
            return ArchConfig.model_validate({**self.base, "stages": stages})
        except ValidationError:
            return None

    def draw(self, rng: random.Random) -> dict[str, Any]:
        return {name: p.draw(rng) for name, p in self.params.items()}

    def encode(self, config: ArchConfig) -> dict[str, Any] | None:
        """Parameter values that decode to ``config``, or ``None`` if it is not a point of the space."""
        if len(config.stages) != self.num_stages:
            return None
        values: dict[str, Any] = {}
        for (i, f), t in self.targets.items():
            if t.growth is not None and i > 0:
                continue  # a grown parameter is its first stage's value; the hash check covers the rest
            v = getattr(config.stages[i], f)
            if values.setdefault(t.param, v) != v:
                return None  # a tied parameter that the stages disagree on
        if not all(p.contains(values[name]) for name, p in self.params.items()):
            return None
        back = self.try_decode(values)
        return values if back is not None and back.arch_hash() == config.arch_hash() else None

    # ---- size of the space ------------------------------------------------------------------
    def count(self) -> int:
        """Number of parameter combinations that satisfy the constraints (exact)."""
        constrained = {f for _, f in self.constraints}
        total = 1
        groups: dict[str, list[str]] = {}
        for name, p in self.params.items():
            f = _field_of(name)
            if f in constrained and name.startswith("stage"):
                groups.setdefault(f, []).append(name)
            else:
                total *= len(p.values)
        for f, names in groups.items():
            total *= self._count_sequences(f, names)
        return total

    def _count_sequences(self, f: str, names: list[str]) -> int:
        # DP over stages: the number of per-stage value sequences that keep every constraint on f.
        kinds = [k for k, g in self.constraints if g == f]
        per_stage = []
        for i in range(self.num_stages):
            if (i, f) in self.fixed:
                per_stage.append((self.fixed[(i, f)],))
            else:
                t = self.targets[(i, f)]
                if t.param in names:
                    per_stage.append(self.params[t.param].values)
                else:  # tied or grown: the sequence is determined by one parameter, counted elsewhere
                    return 1
        ways = {v: 1 for v in per_stage[0]}
        for vals in per_stage[1:]:
            new = {}
            for v in vals:
                new[v] = sum(n for u, n in ways.items()
                             if ("non_decreasing" not in kinds or u <= v) and ("non_increasing" not in kinds or u >= v))
            ways = new
        return sum(ways.values())

    def field_values(self, i: int, f: str) -> set[Any] | None:
        """Every value stage ``i``'s field ``f`` can take (``None`` if there are too many to list)."""
        if (i, f) in self.fixed:
            return {self.fixed[(i, f)]}
        t = self.targets[(i, f)]
        values = self.params[t.param].values
        if len(values) > 10_000:
            return None
        return set(values) if t.growth is None else {_grow(v, t.growth, i) for v in values}

    def flops_monotone(self) -> bool:
        """Whether FLOPs grow with every choice, so the extreme points are the extremes. Widths break
        this where a stride-1 stage may match its input width: that block drops its projection
        shortcut, so a wider choice can cost less than a narrower one that needs the projection."""
        inputs = {self.base.get("stem", {}).get("width", 64)}
        for i, stride in enumerate(self.strides):
            widths = self.field_values(i, "width")
            if widths is None:
                return False
            if stride == 1 and any(w in inputs and w > min(widths) for w in widths):
                return False
            inputs = widths
        return True

    def extreme(self, largest: bool) -> dict[str, Any]:
        """Parameter values that make the network as small (or large) as the space allows: FLOPs grow
        with depth, width, cardinality, group width, radix and SK, and shrink with the SE ratio."""
        values = {}
        for name, p in self.params.items():
            f = _field_of(name)
            if f == "se_ratio":
                # No SE is smallest, then large ratios (few SE channels), then small ratios.
                ordered = sorted(p.values, key=lambda v: (v is not None, -(v or 0)))
                values[name] = ordered[-1] if largest else ordered[0]
            elif p.choices is None:
                values[name] = p.values[-1] if largest else p.values[0]
            else:
                values[name] = (max if largest else min)(p.values)
        return values


def _grow(base: int, growth: float, stage: int) -> int:
    """Stage ``stage``'s value under a growth rule: ``base * growth**stage``, rounded half up."""
    return math.floor(base * growth**stage + 0.5)


def _field_of(param: str) -> str:
    return param.split(".")[1] if param.startswith("stage") else param.split(".")[0]


# ---- parsing ------------------------------------------------------------------------------------------


# Smallest legal value of each integer stage field (the config's own bounds).
_INT_MIN = {"depth": 1, "width": 1, "cardinality": 1, "group_width": 1, "radix": 0}


def _check_value(loc: _Located, path: tuple, f: str, v: Any) -> None:
    """A single choice or fixed value must be a legal value of its stage field."""
    if f == "sk":
        ok, want = isinstance(v, bool), "true or false"
    elif f == "se_ratio":
        ok, want = v is None or (type(v) is int and v >= 1), "null or an integer >= 1"
    else:
        ok, want = type(v) is int and v >= _INT_MIN[f], f"an integer >= {_INT_MIN[f]}"
    if not ok:
        raise loc.error(path, f"{f} must be {want}, got {v!r}")


def _param(loc: _Located, path: tuple, name: str, spec: Any, f: str) -> Param:
    if isinstance(spec, list):
        if not spec:
            raise loc.error(path, "empty list of choices")
        if any(isinstance(v, (list, dict)) for v in spec):
            raise loc.error(path, "choices must be plain values (use per_stage: for one list per stage)")
        for v in spec:
            _check_value(loc, path, f, v)
        if len(set(map(repr, spec))) != len(spec):
            raise loc.error(path, "repeated choice")
        return Param(name, choices=tuple(spec))
    if isinstance(spec, dict):
        unknown = set(spec) - _RANGE_KEYS
        if unknown:
            raise loc.error((*path, sorted(unknown)[0]), f"unknown key (a range has {', '.join(sorted(_RANGE_KEYS))})")
        if f not in INT_FIELDS:
            raise loc.error(path, f"{f} takes a list of choices, not a range")
        low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step", 1), spec.get("log", False)
        for k, v in (("low", low), ("high", high), ("step", step)):
            if type(v) is not int:
                raise loc.error((*path, k), "must be an integer" if v is not None else "missing")
        if not isinstance(log, bool):
            raise loc.error((*path, "log"), "must be true or false")
        if low < _INT_MIN[f] or high < low or step < 1:  # type: ignore[operator]
            raise loc.error(path, f"a range needs {_INT_MIN[f]} <= low <= high and step >= 1 "
                                  f"(got low {low}, high {high}, step {step})")
        if (high - low) % step:  # type: ignore[operator]
            raise loc.error(path, f"step {step} does not divide high - low ({high} - {low}); "
                                  f"the last value would be unreachable")
        if log and (step != 1 or low < 1):  # type: ignore[operator]
            raise loc.error(path, "a log range needs low >= 1 and no step")
        return Param(name, low=low, high=high, step=step, log=log)
    raise loc.error(path, "expected a list of choices or a range {low, high, step|log}")


def parse_space(data: Any, source: str = "space", lines: dict[tuple, int] | None = None) -> SearchSpace:
    """Validate a space document; every error is one line naming the key and its line."""
    loc = _Located(source, lines or {})
    if not isinstance(data, dict):
        raise loc.error((), "a space file must be a mapping with base, stages and choices")
    for key in data:
        if key not in _SPACE_KEYS:
            raise loc.error((key,), f"unknown key (expected one of {', '.join(sorted(_SPACE_KEYS))})")
    space_name = data.get("name") or Path(source).stem
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise loc.error(("base",), "must be a mapping of config keys (resolution, classes, stem, block)")
    if "stages" in base:
        raise loc.error(("base", "stages"), "stages come from the space's choices, not the base")
    n = data.get("stages")
    if type(n) is not int or n < 1:
        raise loc.error(("stages",), "must be the number of stages, an integer >= 1")
    strides = data.get("strides", [1] + [2] * (n - 1))
    if not isinstance(strides, list) or len(strides) != n or any(type(s) is not int or s not in (1, 2)
                                                                    for s in strides):
        raise loc.error(("strides",), f"must be a list of {n} strides, each 1 or 2")
    ties = data.get("ties", [])
    if not isinstance(ties, list) or any(t not in STAGE_FIELDS for t in ties):
        raise loc.error(("ties",), f"must be a list of stage fields ({', '.join(STAGE_FIELDS)})")
    choices = data.get("choices")
    if not isinstance(choices, dict):
        raise loc.error(("choices",), "must be a mapping from stage fields to choices")
    params: dict[str, Param] = {}
    fixed: dict[tuple[int, str], Any] = {}
    targets: dict[tuple[int, str], _Target] = {}
    defaults = StageConfig.model_fields
    for f in STAGE_FIELDS:
        path = ("choices", f)
        if f not in choices:
            if defaults[f].is_required():
                raise loc.error(path, "missing (depth, width and group_width need choices or a value)")
            for i in range(n):
                fixed[(i, f)] = defaults[f].default
            continue
        spec = choices[f]
        if isinstance(spec, dict) and "per_stage" in spec:
            if set(spec) != {"per_stage"}:
                raise loc.error(path, "per_stage stands alone")
            if f in ties:
                raise loc.error(("ties",), f"{f} is tied but has per-stage choices")
            per = spec["per_stage"]
            if not isinstance(per, list) or len(per) != n:
                raise loc.error((*path, "per_stage"), f"needs one entry per stage ({n})")
            for i, s in enumerate(per):
                p = (*path, "per_stage", i)
                if isinstance(s, (list, dict)):
                    params[f"stage{i + 1}.{f}"] = _param(loc, p, f"stage{i + 1}.{f}", s, f)
                    targets[(i, f)] = _Target(f"stage{i + 1}.{f}")
                else:
                    _check_value(loc, p, f, s)
                    fixed[(i, f)] = s
        elif isinstance(spec, dict) and "base" in spec:
            if set(spec) != {"base", "growth"}:
                raise loc.error(path, "a growth rule is {base: choices, growth: factor}")
            growth = spec["growth"]
            if not isinstance(growth, (int, float)) or isinstance(growth, bool) or growth <= 0:
                raise loc.error((*path, "growth"), "must be a positive number")
            if f not in INT_FIELDS:
                raise loc.error(path, f"{f} cannot grow; growth applies to integer fields")
            name = f"{f}.base"
            if isinstance(spec["base"], (list, dict)):
                params[name] = _param(loc, (*path, "base"), name, spec["base"], f)
                for i in range(n):
                    targets[(i, f)] = _Target(name, float(growth))
            else:
                _check_value(loc, (*path, "base"), f, spec["base"])
                for i in range(n):
                    fixed[(i, f)] = _grow(spec["base"], float(growth), i)
        elif isinstance(spec, (list, dict)):
            if f in ties:
                params[f] = _param(loc, path, f, spec, f)
                for i in range(n):
                    targets[(i, f)] = _Target(f)
            else:
                for i in range(n):
                    name = f"stage{i + 1}.{f}"
                    params[name] = _param(loc, path, name, spec, f)
                    targets[(i, f)] = _Target(name)
        else:
            _check_value(loc, path, f, spec)
            for i in range(n):
                fixed[(i, f)] = spec
    for f in choices:
        if f not in STAGE_FIELDS:
            raise loc.error(("choices", f), f"unknown stage field (expected one of {', '.join(STAGE_FIELDS)})")
    constraints = []
    for j, c in enumerate(data.get("constraints", []) or []):
        if not isinstance(c, dict) or len(c) != 1:
            raise loc.error(("constraints", j), "a constraint is {non_decreasing: FIELD} or {non_increasing: FIELD}")
        (kind, f), = c.items()
        if kind not in MONOTONE_CONSTRAINTS:
            raise loc.error(("constraints", j, kind), f"unknown constraint (known: {', '.join(MONOTONE_CONSTRAINTS)})")
        if f not in INT_FIELDS:
            raise loc.error(("constraints", j, kind), f"applies to an integer stage field ({', '.join(INT_FIELDS)})")
        constraints.append((kind, f))
    lineage = data.get("lineage")
    if lineage is not None and not isinstance(lineage, dict):
        raise loc.error(("lineage",), "must be a mapping (written by nas space refine)")
    space = SearchSpace(name=str(space_name), description=str(data.get("description", "")).strip(), base=base,
                        strides=tuple(strides), params=params, fixed=fixed, targets=targets,
                        constraints=tuple(constraints), source=source, lineage=lineage)
    _check_base(space, loc)
    _check_feasible(space, loc)
    return space


def _check_base(space: SearchSpace, loc: _Located) -> None:
    # Validate the base and every fixed value through the config itself, so messages match configs'.
    probe = {name: p.values[0] for name, p in space.params.items()}
    try:
        ArchConfig.model_validate({**space.base, "stages": space.stage_values(probe)})
    except ValidationError as exc:
        for err in exc.errors():
            path = tuple(err["loc"])
            if path and path[0] != "stages":
                raise loc.error(("base", *path), error_message(err)) from None


def _check_feasible(space: SearchSpace, loc: _Located, tries: int = 2000) -> None:
    """Refuse a space whose choices can never produce a valid config, quoting the reason the last
    point failed. Every combination is tried (lazily) when there are at most ``20 * tries``;
    otherwise the two extremes and ``tries`` seeded random points."""
    rng = random.Random(0)
    exhaustive = math.prod(len(p.values) for p in space.params.values()) <= 20 * tries
    if exhaustive:
        points: Any = (dict(zip(space.params, combo))
                       for combo in itertools.product(*(p.values for p in space.params.values())))
    else:
        points = itertools.chain([space.extreme(False), space.extreme(True)],
                                 (space.draw(rng) for _ in range(tries)))
    reason = "the constraints exclude every combination"
    for values in points:
        stages = space.stage_values(values)
        if not space.satisfies_constraints(stages):
            continue
        try:
            ArchConfig.model_validate({**space.base, "stages": stages})
            return
        except ValidationError as exc:
            err = exc.errors()[0]
            reason = f"{'.'.join(map(str, err['loc']))}: {error_message(err)}"
    if exhaustive:
        raise loc.error(("choices",), f"no combination of choices gives a valid network (e.g. {reason})")
    raise loc.error(("choices",), f"none of {tries} random combinations of choices gives a valid network, so a "
                                  f"search could not sample it (e.g. {reason})")


def load_space_file(path: str | Path) -> SearchSpace:
    return parse_space_text(read_user_text(path), str(path))


def parse_space_text(text: str, source: str) -> SearchSpace:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    return parse_space(data, source, _lines(node) if node is not None else {})
