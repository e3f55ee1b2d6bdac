"""The refine step's evidence and acceptance rule on hand-made populations whose answer is known, and
``nas space refine`` / ``compare`` / ``show`` on population studies written through Optuna's API."""

from importlib import resources

import numpy as np
import optuna
import pytest
import yaml

from nas.common.errors import UserError
from nas.common.files import fingerprint
from nas.dashboards.refine import MIN_MODELS, Population, compare_populations, propose
from nas.search_spaces.registry import load_space
from nas.search_spaces.sampler import sample
from nas.search_spaces.space import parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
TEXT = (resources.files("nas.search_spaces.spaces") / "resnext-cifar.yaml").read_text()


def truth(values, rng, stage3_effect=0.06, monotone_effect=0.04):
    e = 0.5 + (stage3_effect if values["stage3.depth"] <= 2 else 0.0)
    depths = [values[f"stage{i}.depth"] for i in (1, 2, 3)]
    if any(a > b for a, b in zip(depths, depths[1:])):
        e += monotone_effect
    return e + rng.normal(0, 0.015)


def population(n, seed=0, **effects):
    space = load_space("resnext-cifar")
    cands = sample(space, high=1e12, n=n, seed=seed).candidates
    rng = np.random.default_rng(seed)
    return Population(space, [c.values for c in cands], np.array([truth(c.values, rng, **effects) for c in cands]),
                      np.array([c.flops for c in cands], dtype=float), f"pop-{seed}")


def _decisions(proposals):
    return {q.description: q.accepted for q in proposals}


def test_a_parameter_with_a_best_range_is_narrowed_and_a_monotone_trend_constrained():
    got = _decisions(propose(population(300), yaml.safe_load(TEXT)))
    assert got["narrow stage3.depth to [3, 4]"] and got["depth non-decreasing"]
    # SE ratios have no effect (and hardly move FLOPs): never narrowed
    assert not any(ok for d, ok in got.items() if "se_ratio" in d and d.startswith(("narrow", "drop")))


def test_without_effects_nothing_that_favours_values_is_accepted():
    props = propose(population(300, seed=1, stage3_effect=0.0, monotone_effect=0.0), yaml.safe_load(TEXT))
    # pure noise: nothing favours any value, with or without FLOPs (the error does not depend on them)
    assert not [q.description for q in props if q.accepted and q.refinement.kind in ("narrow", "drop")]
    for q in props:  # every proposal carries its figures or says why not
        assert q.reason and (q.evidence is not None or "too few" in q.reason)


def test_a_simplification_that_loses_accuracy_is_rejected():
    # the truth punishes equal depths: sharing depth across stages admits only worse models
    space = load_space("resnext-cifar")
    cands = sample(space, high=1e12, n=300, seed=2).candidates
    rng = np.random.default_rng(2)
    err = [0.5 + (0.05 if len({c.values[f"stage{i}.depth"] for i in (1, 2, 3)}) == 1 else 0) + rng.normal(0, 0.01)
           for c in cands]
    pop = Population(space, [c.values for c in cands], np.array(err), np.array([c.flops for c in cands], float), "p")
    share = next(q for q in propose(pop, yaml.safe_load(TEXT)) if q.description == "share depth across stages")
    assert not share.accepted and share.evidence.mean_diff[0] > 0.03


def test_too_few_models_is_one_line():
    with pytest.raises(UserError, match=f"at least {MIN_MODELS}"):
        propose(population(MIN_MODELS - 1), yaml.safe_load(TEXT))


def test_compare_sees_a_better_refined_population():
    parent = population(200, seed=3)
    doc = yaml.safe_load(TEXT)
    from nas.search_spaces.refinements import Refinement, apply

    child_space = parse_space(apply(doc, parent.space, [Refinement("narrow", "stage3.depth", (3, 4))]), source="c")
    cands = sample(child_space, high=1e12, n=200, seed=4).candidates
    rng = np.random.default_rng(4)
    child = Population(child_space, [c.values for c in cands], np.array([truth(c.values, rng) for c in cands]),
                       np.array([c.flops for c in cands], float), "child")
    result = compare_populations(parent, child)
    assert result.verdict().startswith("child is better than pop-3") and "times smaller" in result.verdict()
    same = compare_populations(parent, population(200, seed=5))
    assert "worse" not in same.verdict().split(":")[0]


# ---- the commands on population studies -------------------------------------------------------------


def write_population(storage, name, text, n, seed=0, population=True, epochs=3):
    """A population study as nas search --population writes it, the training invented (``truth``)."""
    from nas.search_spaces.optuna_bridge import distributions
    from nas.search_spaces.space import parse_space_text
    from nas.study.lifecycle import new_settings
    from nas.study.records import SPACE_SOURCE_ATTR

    space = parse_space_text(text, name)
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    settings = new_settings(space=space.name, space_fingerprint=fingerprint(text), space_resolution=32,
                            budget_low=0.0, budget_high=1e12, dataset="shapes", train_resolution=32, classes=10,
                            train_images=2000, val_images=1000, epochs=epochs, batch_size=64,
                            schedule={"lr": 0.025}, objectives=("accuracy", "flops"), early_stopping=None,
                            population=population)
    for k, v in settings.to_attrs().items():
        study.set_user_attr(k, v)
    study._storage.set_study_system_attr(study._study_id, SPACE_SOURCE_ATTR, text)
    rng = np.random.default_rng(seed)
    dists = distributions(space)
    for c in sample(space, high=1e12, n=n, seed=seed).candidates:
        acc = 1 - truth(c.values, rng)
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[acc, c.flops], params=c.values, distributions=dists,
            user_attrs={"outcome": "complete", "accuracy": acc, "flops": c.flops, "arch_hash": c.arch_hash,
                        "val_images": 1000}))
    return study


@pytest.fixture(scope="module")
def pop_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("refine") / "nas.db"
    write_population(f"sqlite:///{db}", "pop-A", TEXT, 200)
    write_population(f"sqlite:///{db}", "search-A", TEXT, 40, population=False)
    write_population(f"sqlite:///{db}", "small-A", TEXT, 12)
    write_population(f"sqlite:///{db}", "short-A", TEXT, 30, epochs=1)
    return db


def test_refine_writes_a_space_with_its_lineage(pop_db, cli, tmp_path):
    out = tmp_path / "refined.yaml"
    code, stdout, err = cli("space", "refine", "--study", "pop-A", "--storage", pop_db, "-o", out)
    assert code == 0, err
    assert "ACCEPT" in stdout and "reject" in stdout and "narrow stage3.depth to [3, 4]" in stdout
    lineage = yaml.safe_load(out.read_text())["lineage"]
    assert lineage["parent"] == {"space": "resnext-cifar", "fingerprint": fingerprint(TEXT)}
    assert lineage["study"]["name"] == "pop-A" and lineage["study"]["models"] == 200
    assert lineage["size"]["after"] < lineage["size"]["before"]
    assert "narrow stage3.depth to [3, 4]" in [c["change"] for c in lineage["accepted"]]
    child = load_space(str(out))
    assert child.name == "resnext-cifar-r1" and all(v >= 3 for v in child.params["stage3.depth"].values) \
        if "stage3.depth" in child.params else child.fixed[(2, "depth")] >= 3
    code, shown, err = cli("space", "show", out)
    assert code == 0 and "lineage:" in shown and "pop-A" in shown and err == ""


def test_a_refinement_of_a_refinement_keeps_the_chain_and_compare_judges(pop_db, cli, tmp_path):
    out = tmp_path / "r1.yaml"
    assert cli("space", "refine", "--study", "pop-A", "--storage", pop_db, "-o", out)[0] == 0
    storage = f"sqlite:///{pop_db}"
    write_population(storage, "pop-B", out.read_text(), 150, seed=7)
    out2 = tmp_path / "r2.yaml"
    code, stdout, err = cli("space", "refine", "--study", "pop-B", "--storage", pop_db, "-o", out2,
                            "--apply", "share se_ratio across stages")
    assert code == 0, err
    lin = yaml.safe_load(out2.read_text())["lineage"]
    assert lin["ancestors"][0]["study"]["name"] == "pop-A" and lin["study"]["name"] == "pop-B"
    assert any("applied by --apply" in c["decision"] for c in lin["accepted"])
    assert "1 applied by --apply" in stdout
    code, shown, _ = cli("space", "show", out2)
    assert code == 0 and "share se_ratio across stages: n " in shown
    (line,) = [x for x in shown.splitlines() if "+ share se_ratio across stages" in x]
    assert line.endswith("(applied by --apply; the rule rejected it)")
    code, stdout, err = cli("space", "compare", "--study", "pop-A", "--study", "pop-B", "--storage", pop_db,
                            "--html", tmp_path / "edf.html")
    assert code == 0, err
    verdict = [line for line in stdout.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and "pop-B is better than pop-A" in verdict[0]
    assert "pop-A" in (tmp_path / "edf.html").read_text()


def test_a_parent_that_changed_is_a_warning(pop_db, cli, tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text(TEXT)
    out = tmp_path / "r.yaml"
    assert cli("space", "refine", "--study", "pop-A", "--storage", pop_db, "-o", out)[0] == 0
    doc = yaml.safe_load(out.read_text())
    doc["lineage"]["parent"] = {"space": "mine", "fingerprint": fingerprint(TEXT), "file": str(parent)}
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert cli("space", "show", out)[2] == ""
    parent.write_text(TEXT.replace("cardinality: [2, 4, 8, 16]", "cardinality: [2, 4, 8]"))
    code, _, err = cli("space", "show", out)
    assert code == 0 and err.startswith("warning: ") and "has changed" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    (["--study", "search-A"], "is not a population"),
    (["--study", "small-A"], f"at least {MIN_MODELS}"),
    (["--study", "nope"], "nope"),
    (["--study", "pop-A", "--apply", "narrow everything"], "no such proposal"),
])
def test_refine_mistakes_are_one_line_and_write_nothing(pop_db, cli, tmp_path, args, words):
    out = tmp_path / "r.yaml"
    code, stdout, err = cli("space", "refine", "--storage", pop_db, "-o", out, *args)
    assert code == 2 and err.startswith("error: ") and words in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_refine_to_an_unwritable_output(pop_db, cli, tmp_path):
    code, _, err = cli("space", "refine", "--study", "pop-A", "--storage", pop_db, "-o", tmp_path / "no" / "r.yaml")
    assert code == 2 and err.startswith("error: -o ") and "does not exist" in err


def test_the_report_marks_a_search_biased_and_a_population_not(pop_db):
    from nas.dashboards.figures import build_dashboard
    from nas.dashboards.studies import open_sources

    sources, _ = open_sources(f"sqlite:///{pop_db}", ["pop-A", "search-A"])
    notes = build_dashboard([s.read() for s in sources]).notes
    for key in ("edf", "effects"):
        assert "BIASED: search-A: not sampled as a population" in notes[key]
        assert "pop-A is a population" in notes[key] and "BIASED: pop-A" not in notes[key]


@pytest.mark.parametrize("studies, words", [
    (["pop-A", "short-A"], "were trained differently (epochs 3 vs 1)"),
    (["pop-A", "pop-A"], "given twice"),
    (["pop-A", "search-A"], "is not a population"),
])
def test_compare_mistakes_are_one_line(pop_db, cli, studies, words):
    code, _, err = cli("space", "compare", "--study", studies[0], "--study", studies[1], "--storage", pop_db)
    assert code == 2 and err.startswith("error: ") and words in err and len(err.splitlines()) == 1


def test_refine_with_a_negative_seed(pop_db, cli, tmp_path):
    code, _, err = cli("space", "refine", "--study", "pop-A", "--storage", pop_db, "-o", tmp_path / "r.yaml",
                       "--seed", "-5")
    assert code == 2 and "--seed must be 0 or more" in err and not (tmp_path / "r.yaml").exists()
