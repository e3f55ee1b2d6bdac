"""Refinements as edits of a space document: each kind keeps exactly the points it admits."""

import itertools
from importlib import resources

import pytest
import yaml

from nas.common.errors import UserError
from nas.search_spaces.refinements import Refinement, apply, structural_candidates, with_lineage
from nas.search_spaces.space import parse_space


def _doc(name="resnext-cifar"):
    return yaml.safe_load((resources.files("nas.search_spaces.spaces") / f"{name}.yaml").read_text())


def _points(space):
    for combo in itertools.product(*(space.params[p].values for p in space.params)):
        values = dict(zip(space.params, combo))
        config = space.try_decode(values)
        if config is not None:
            yield values, config.arch_hash()


def _children_hashes(doc, parent, refinements):
    child = parse_space(apply(doc, parent, refinements), source="child")
    return {h for _, h in _points(child)}, child


@pytest.mark.parametrize("refinements", [
    [Refinement("narrow", "stage3.depth", (3, 4))],
    [Refinement("drop", "cardinality", (2, 4, 8))],
    [Refinement("narrow", "group_width.base", (16, 32, 64))],
    [Refinement("share", "depth")],
    [Refinement("monotone", "depth")],
    [Refinement("narrow", "stage3.depth", (3, 4)), Refinement("share", "depth"), Refinement("monotone", "depth")],
    [Refinement("narrow", "stage1.se_ratio", (16,))],
])
def test_the_refined_space_holds_exactly_the_admitted_architectures(refinements):
    doc = _doc()
    parent = parse_space(doc, source="parent")
    expected = {h for values, h in _points(parent) if all(r.admits(parent, values) for r in refinements)}
    got, child = _children_hashes(doc, parent, refinements)
    assert got == expected and child.count() == len(expected) < parent.count()


def test_structural_candidates_are_per_stage_fields_only():
    space = parse_space(_doc(), source="p")
    found = {(r.kind, r.target) for r in structural_candidates(space)}
    # cardinality is tied and widths grow from one base: nothing to share; depth and SE are per stage
    assert found == {("share", "depth"), ("monotone", "depth"), ("share", "se_ratio")}


def test_a_narrowing_that_keeps_nothing_is_refused():
    doc = _doc()
    space = parse_space(doc, source="p")
    with pytest.raises(UserError, match="keeps no value"):
        apply(doc, space, [Refinement("narrow", "stage3.depth", (9,))])


def test_lineage_round_trips_through_the_parser():
    doc = _doc()
    space = parse_space(doc, source="p")
    child = with_lineage(apply(doc, space, [Refinement("monotone", "depth")]), "resnext-cifar-r1",
                         {"parent": {"space": "resnext-cifar", "fingerprint": "abc"}, "accepted": []}, [])
    parsed = parse_space(yaml.safe_load(yaml.safe_dump(child)), source="c")
    assert parsed.name == "resnext-cifar-r1" and parsed.lineage["parent"]["fingerprint"] == "abc"
    assert parsed.lineage["ancestors"] == [] and ("non_decreasing", "depth") in parsed.constraints
