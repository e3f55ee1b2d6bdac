"""Refinements of a declarative space: the four kinds RegNet's design-space steps used, as edits of a
space document that keep it an ordinary space file.

* ``narrow``: a parameter keeps only a contiguous run of its ordered values (its bootstrap best range);
* ``drop``: a parameter loses one value (one the best models avoid);
* ``share``: a per-stage field takes one value for every stage (a tie);
* ``monotone``: a per-stage integer field must not decrease from stage to stage.

Each :class:`Refinement` answers two questions: does a point of the parent space (its parameter values)
lie in the refined space (:meth:`Refinement.admits`), and what is the refined document
(:func:`apply`). Statistics live elsewhere (``nas.dashboards.refine``); this module only knows spaces.
The refined document carries a ``lineage`` block (:func:`with_lineage`) that the parser keeps and
``nas space show`` prints.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas.common.errors import UserError
from nas.search_spaces.space import INT_FIELDS, SearchSpace, _field_of

KINDS = ("narrow", "drop", "share", "monotone")


@dataclass(frozen=True)
class Refinement:
    """One proposed change. ``target`` is a parameter name (narrow, drop) or a stage field (share,
    monotone); ``keep`` the values a narrow or drop keeps, in the parameter's order."""

    kind: str
    target: str
    keep: tuple = ()

    def describe(self, space: SearchSpace) -> str:
        if self.kind == "narrow":
            return f"narrow {self.target} to {_show_values(self.keep)}"
        if self.kind == "drop":
            gone = [v for v in space.params[self.target].values if v not in self.keep]
            return f"drop {self.target}={_show(gone[0])}" if len(gone) == 1 else f"drop {self.target}"
        if self.kind == "share":
            return f"share {self.target} across stages"
        return f"{self.target} non-decreasing"

    def admits(self, space: SearchSpace, values: dict[str, Any]) -> bool:
        """Whether the parent-space point ``values`` lies in the refined space."""
        if self.kind in ("narrow", "drop"):
            return _contains(self.keep, values[self.target])
        stages = [s[self.target] for s in space.stage_values(values)]
        if self.kind == "share":
            return all(v == stages[0] and type(v) is type(stages[0]) for v in stages)
        return all(a <= b for a, b in zip(stages, stages[1:]))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.keep:
            out["keep"] = list(self.keep)
        return out


def _contains(values: Sequence[Any], v: Any) -> bool:
    return any(v == c and type(v) is type(c) for c in values)


def _show(v: Any) -> str:
    return "null" if v is None else str(v).lower()


def _show_values(values: Sequence[Any]) -> str:
    vals = list(values)
    if len(vals) > 4 and all(type(v) is int for v in vals):
        return f"{vals[0]}..{vals[-1]} ({len(vals)} values)"
    return "[" + ", ".join(_show(v) for v in vals) + "]"


# ---- which refinements a space allows --------------------------------------------------------------


def per_stage_fields(space: SearchSpace) -> dict[str, list[str]]:
    """Stage fields chosen independently per stage (``stage1.depth``, ``stage2.depth`` ...), by field."""
    out: dict[str, list[str]] = {}
    for name in space.params:
        if name.startswith("stage"):
            out.setdefault(_field_of(name), []).append(name)
    return {f: names for f, names in out.items() if len(names) >= 2}


def shared_values(space: SearchSpace, f: str) -> list[Any]:
    """The values every stage of field ``f`` can take (what a tie may keep), in the first stage's order."""
    names = per_stage_fields(space).get(f, [])
    if not names:
        return []
    first = list(space.params[names[0]].values)
    return [v for v in first if all(space.params[n].contains(v) for n in names[1:])]


def structural_candidates(space: SearchSpace) -> list[Refinement]:
    """Every share and monotone refinement the space admits (value-neutral simplifications)."""
    out = []
    for f, _names in per_stage_fields(space).items():
        fixed_stage = any((i, f) in space.fixed for i in range(space.num_stages))
        if shared_values(space, f) and not fixed_stage:  # a tie with a fixed stage would add points
            out.append(Refinement("share", f))
        if f in INT_FIELDS and ("non_decreasing", f) not in space.constraints:
            out.append(Refinement("monotone", f))
    return out


# ---- the refined document -----------------------------------------------------------------------


def _spec(values: Sequence[Any], was_range: bool, log: bool) -> Any:
    """How kept values are written: one value is fixed; a run of integers from a range stays a range."""
    vals = list(values)
    if len(vals) == 1:
        return vals[0]
    if was_range and all(type(v) is int for v in vals):
        steps = {b - a for a, b in zip(vals, vals[1:])}
        if log and steps == {1}:
            return {"low": vals[0], "high": vals[-1], "log": True}
        if len(steps) == 1:
            return {"low": vals[0], "high": vals[-1], "step": steps.pop()}
    return vals


def _set_param(doc: dict[str, Any], space: SearchSpace, name: str, keep: Sequence[Any]) -> None:
    p = space.params[name]
    spec = _spec(keep, p.choices is None, p.log)
    f = _field_of(name)
    choices = doc["choices"]
    if name.startswith("stage"):
        i = int(name.split(".")[0][len("stage"):]) - 1
        current = choices[f]
        if not (isinstance(current, dict) and "per_stage" in current):  # one list for every stage: split it
            current = {"per_stage": [copy.deepcopy(current) for _ in range(space.num_stages)]}
            choices[f] = current
        current["per_stage"][i] = spec
    elif name.endswith(".base"):
        choices[f]["base"] = spec
    else:
        choices[f] = spec


def apply(doc: dict[str, Any], space: SearchSpace, refinements: Sequence[Refinement]) -> dict[str, Any]:
    """The refined space document: value refinements first, then ties (over what the stages still
    share), then constraints. ``space`` is ``doc`` parsed."""
    out = copy.deepcopy(doc)
    out.pop("lineage", None)
    values = {name: list(p.values) for name, p in space.params.items() if len(p.values) < 10_000}
    for r in refinements:
        if r.kind in ("narrow", "drop"):
            kept = [v for v in values.get(r.target, list(space.params[r.target].values)) if _contains(r.keep, v)]
            if not kept:
                raise UserError(f"refinement {r.describe(space)} keeps no value of {r.target}")
            values[r.target] = kept
            _set_param(out, space, r.target, kept)
    for r in refinements:
        if r.kind == "share":
            names = per_stage_fields(space)[r.target]
            kept = [values.get(n) or list(space.params[n].values) for n in names]
            common = [v for v in kept[0] if all(_contains(other, v) for other in kept[1:])]
            if not common:
                raise UserError(f"share {r.target}: the stages' remaining values have none in common")
            out["choices"][r.target] = common[0] if len(common) == 1 else common
            ties = list(out.get("ties") or [])
            if r.target not in ties and len(common) > 1:
                ties.append(r.target)
            if ties:
                out["ties"] = ties
    for r in refinements:
        if r.kind == "monotone":
            out["constraints"] = [*(out.get("constraints") or []), {"non_decreasing": r.target}]
    return out


def log10_size(space: SearchSpace) -> float:
    n = space.count()
    return math.log10(n) if n > 0 else float("-inf")


def with_lineage(doc: dict[str, Any], name: str, lineage: dict[str, Any], ancestors: list[dict[str, Any]]) -> dict:
    """The document renamed, with its ``lineage`` block last (the parent's chain kept as ``ancestors``)."""
    out = {k: v for k, v in doc.items() if k != "lineage"}
    out["name"] = name
    out["lineage"] = {**lineage, "ancestors": ancestors}
    return out
