"""The MO-ASHA rule (nas.stopping.rule) on hand-made rungs whose outcome is known."""

import json
import math
import random

import pytest

from nas.common.errors import UserError
from nas.stopping.rule import CONTINUE, MOASHA, STOP, keep_count, rung_epochs

ACC_FLOPS = dict(objectives=("accuracy", "flops"), maximise=(True, False))


def rule(max_epochs=10, grace=1, eta=3, **kw):
    return MOASHA(**{**ACC_FLOPS, **kw}, max_epochs=max_epochs, grace=grace, eta=eta)


def decide_all(r, epoch, vectors):
    return [r.on_result(k, epoch, v) for k, v in vectors]


@pytest.mark.parametrize("grace, eta, max_epochs, rungs", [
    (1, 3, 10, [1, 3, 9]), (1, 3, 9, [1, 3]), (1, 3, 2, [1]), (2, 2, 16, [2, 4, 8]),
    (3, 3, 30, [3, 9, 27]), (3, 3, 27, [3, 9]),
])
def test_rungs_lie_strictly_below_the_schedule(grace, eta, max_epochs, rungs):
    assert rung_epochs(grace, eta, max_epochs) == rungs
    assert rule(max_epochs, grace, eta).rungs == rungs


def test_keep_count():
    assert [keep_count(n, 3) for n in range(1, 11)] == [1, 2, 1, 1, 1, 2, 2, 2, 3, 3]


def test_dominated_vectors_stop_and_the_front_continues():
    r = rule()
    got = decide_all(r, 1, [
        ("a", (0.50, 10)),  # n=1: still filling
        ("b", (0.40, 20)),  # n=2: still filling, though dominated by a
        ("c", (0.30, 30)),  # n=3, keep 1: dominated by a and b
        ("d", (0.60, 5)),   # n=4, keep 1: dominates everyone
        ("e", (0.55, 8)),   # n=5, keep 1: dominated by d
        ("f", (0.70, 40)),  # n=6, keep 2: the front is {d, f}, it fits
    ])
    assert got == [CONTINUE, CONTINUE, STOP, CONTINUE, STOP, CONTINUE]
    assert r.stopped() == {"c": 1, "e": 1}


def test_crowding_distance_breaks_ties_inside_the_last_front():
    r = rule(max_epochs=10, eta=2)  # rungs 1, 2, 4, 8
    got = decide_all(r, 1, [
        ("p", (0.2, 1)),     # n=1
        ("q", (0.8, 9)),     # n=2, keep 1: front {p, q}, both ends (infinite distance): ties go to q
        ("r", (0.5, 5)),     # n=3, keep 1: front {p, q, r}; r is inside, two ends rank ahead
        ("s", (0.9, 10)),    # n=4, keep 2: a new end of the front, nobody strictly ahead
        ("t", (0.85, 9.5)),  # n=5, keep 2: inside, the most crowded: p, s, r, q rank ahead
    ])
    assert got == [CONTINUE, CONTINUE, STOP, CONTINUE, STOP]


def test_three_objectives_rank_by_fronts_then_crowding():
    r = MOASHA(("accuracy", "flops", "params"), (True, False, False), max_epochs=9, eta=3)
    vectors = [(0.5, 10, 100), (0.6, 20, 50), (0.4, 30, 300), (0.3, 40, 400), (0.2, 50, 500), (0.7, 5, 60)]
    got = decide_all(r, 1, list(enumerate(vectors)))
    # n=3 (keep 1): 2 is dominated by 0; n=4, n=5: dominated; n=6 (keep 2): 5 dominates every other vector.
    assert got == [CONTINUE, CONTINUE, STOP, STOP, STOP, CONTINUE]


def test_nothing_is_stopped_while_a_rung_fills_and_the_best_always_continues():
    r = rule(eta=4)
    worsening = [(f"w{i}", (1.0 - i / 100, 10 + i)) for i in range(20)]
    assert decide_all(r, 1, worsening) == [CONTINUE] * 3 + [STOP] * 17
    r = rule(eta=4)
    improving = [(f"i{i}", (i / 100, 10 - i / 10)) for i in range(20)]
    assert decide_all(r, 1, improving) == [CONTINUE] * 20


@pytest.mark.parametrize("n_objectives", [1, 2, 3])
def test_the_top_one_over_eta_share_holds_over_many_trials(n_objectives):
    rng = random.Random(n_objectives)
    r = MOASHA([f"o{i}" for i in range(n_objectives)], [True] * n_objectives, max_epochs=9, eta=3)
    n = 600 if n_objectives < 3 else 300
    got = [r.on_result(i, 1, [rng.random() for _ in range(n_objectives)]) for i in range(n)]
    share = got.count(CONTINUE) / n
    assert abs(share - 1 / 3) < 0.05, share
    if n_objectives == 1:
        # One objective: the position is the number of earlier values strictly better, exactly.
        values = [v[0] for _, v in r.recorded(1)]
        expected = [CONTINUE if sum(u > v for u in values[:i]) < keep_count(i + 1, 3) else STOP
                    for i, v in enumerate(values)]
        assert got == expected


def test_a_retried_trial_repeats_its_decisions_and_its_first_record_stands():
    r = rule(max_epochs=10, eta=2)  # rungs 1, 2, 4, 8
    assert r.on_result("a", 1, (0.5, 10)) == CONTINUE
    assert r.on_result("a", 2, (0.6, 10)) == CONTINUE
    assert r.on_result("b", 1, (0.4, 20)) == STOP
    for k, acc in enumerate([0.9, 0.8, 0.7, 0.95]):
        r.on_result(f"x{k}", 1, (acc, 1))
    # Retried: epochs restart at 1 with other accuracies; "a" now ranks last at rung 1, but its first
    # decision stands, and so does its first vector.
    assert r.on_result("a", 1, (0.0, 10)) == CONTINUE
    assert r.on_result("a", 2, (0.0, 10)) == CONTINUE
    assert r.on_result("a", 3, (0.0, 10)) == CONTINUE
    assert dict(r.recorded(1))["a"] == (0.5, 10.0)
    # A stopped trial reported again (a duplicate result, a late report) is stopped again.
    assert r.on_result("b", 1, (0.99, 1)) == STOP
    assert r.on_result("b", 2, (0.99, 1)) == STOP
    assert r.stopped()["b"] == 1


def test_a_final_epoch_is_never_stopped():
    r = rule(max_epochs=3, eta=2)  # rungs 1, 2
    r.on_result("good", 1, (0.9, 1))
    assert r.on_result("bad", 1, (0.1, 9)) == STOP
    assert r.on_result("bad", 3, (0.1, 9)) == CONTINUE
    assert r.on_result("short", 3, (0.0, 99)) == CONTINUE
    assert [k for k, _ in r.recorded(1)] == ["good", "bad"]


def test_a_diverged_trial_is_stopped_at_its_first_rung_and_ranks_last():
    r = rule(eta=3)
    assert r.on_result("nan", 1, (math.nan, 10)) == STOP
    assert r.on_result("none", 1, {"accuracy": None, "flops": 10}) == STOP
    # n=3, keep 1: the two diverged vectors rank behind it
    assert r.on_result("ok", 1, (0.1, 50)) == CONTINUE


def simulated_results(n_trials=40, max_epochs=10, workers=3, seed=0):
    """An asynchronous stream (trial, epoch, (acc, flops)) of complete learning curves: W workers,
    epoch time proportional to flops, results in order of finish time."""
    rng = random.Random(seed)
    trials = []
    for i in range(n_trials):
        flops = rng.uniform(1, 10)
        final = rng.uniform(0.3, 0.9)
        curve = [final * (1 - math.exp(-(e + 1) / rng.uniform(1, 4))) for e in range(max_epochs)]
        trials.append((i, flops, curve))
    events = []
    clock = [0.0] * workers
    for i, flops, curve in trials:
        w = min(range(workers), key=clock.__getitem__)
        for e, acc in enumerate(curve, start=1):
            clock[w] += flops
            events.append((clock[w], i, e, (acc, flops)))
    events.sort()
    return [(i, e, v) for _, i, e, v in events]


def played(results, r):
    """The results a run would see (a stopped trial reports nothing after its stop), with decisions."""
    seen, decisions, stopped = [], [], set()
    for i, e, v in results:
        if i not in stopped:
            seen.append((i, e, v))
            decisions.append(r.on_result(i, e, v))
            if decisions[-1] == STOP:
                stopped.add(i)
    return seen, decisions


def test_resume_from_recorded_vectors_decides_as_an_uninterrupted_run():
    results, decisions = played(simulated_results(), rule(max_epochs=10, eta=3))
    assert STOP in decisions and CONTINUE in decisions
    cut = len(results) // 2
    before, after = results[:cut], results[cut:]

    # Rebuilt from stored curves in another order (trial by trial, newest first), then continued.
    resumed = rule(max_epochs=10, eta=3)
    by_trial = sorted(before, key=lambda x: (-x[0], x[1]))
    resumed.record_all(by_trial)
    assert [resumed.on_result(i, e, v) for i, e, v in after] == decisions[cut:]

    # Rebuilt from an exported state that went through JSON.
    partial = rule(max_epochs=10, eta=3)
    for i, e, v in before:
        partial.on_result(i, e, v)
    restored = MOASHA.from_state(json.loads(json.dumps(partial.state())))
    assert restored.state() == partial.state()
    assert [restored.on_result(i, e, v) for i, e, v in after] == decisions[cut:]
    # ...and it answers the repeats of the stored results as the original did.
    assert [restored.on_result(i, e, v) for i, e, v in before] == decisions[:cut]


def test_decisions_depend_only_on_the_sequence_of_results():
    results = simulated_results(seed=3)
    a, b = rule(), rule()
    assert [a.on_result(*x) for x in results] == [b.on_result(*x) for x in results]


def test_vectors_by_name_or_position():
    r = rule()
    r.on_result(1, 1, {"flops": 5, "accuracy": 0.5, "params": 9})
    r.on_result(2, 1, [0.4, 6])
    assert r.recorded(1) == [(1, (0.5, 5.0)), (2, (0.4, 6.0))]
    with pytest.raises(ValueError, match="expected 2 objective values"):
        r.on_result(3, 1, [0.4])
    with pytest.raises(ValueError, match="lacks objective"):
        r.on_result(3, 1, {"accuracy": 0.4})


@pytest.mark.parametrize("kwargs, message", [
    (dict(eta=1), "eta must be at least 2"),
    (dict(eta=2.5), "eta must be an integer"),
    (dict(grace=0), "grace must be at least 1"),
    (dict(grace=10), "grace 10 is not below the 10-epoch schedule, so there is no rung"),
    (dict(grace=12), "no rung"),
    (dict(max_epochs=0), "max_epochs must be at least 1"),
    (dict(maximise=(True,)), "2 objectives but 1 directions"),
    (dict(objectives=(), maximise=()), "at least one objective"),
    (dict(objectives=("flops", "flops")), "objectives repeat"),
])
def test_argument_errors_are_one_line(kwargs, message):
    args = {**ACC_FLOPS, "max_epochs": 10, "grace": 1, "eta": 3, **kwargs}
    with pytest.raises(UserError, match=message) as info:
        MOASHA(**args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("epochs, grace, rungs", [(1, None, None), (3, 1, [1]), (9, 2, [2, 6]), (10, 2, [2, 6]),
                                                  (30, 7, [7, 21])])
def test_first_rung_defaults_to_a_quarter_of_the_schedule(epochs, grace, rungs):
    # epoch 1 of 9 ranked noise on the recorded curves (BENCHMARKS.md): the first rung waits
    from nas.search.options import SearchOptions, early_stopping_for

    notes = []
    es = early_stopping_for(SearchOptions(space="resnest", budget="4G"), epochs, notes)
    if rungs is None:
        assert es is None and "no effect" in notes[0]
    else:
        assert es == {"grace": grace, "eta": 3, "gate_curves": 10}
        assert rung_epochs(es["grace"], es["eta"], epochs) == rungs


# ---- rungs gated by evidence ---------------------------------------------------------------------


def _gated(min_curves=10):
    return MOASHA(("accuracy", "flops"), (True, False), max_epochs=3, grace=1, eta=2, gate_curves=min_curves)


def _curves(rng, n, agree):
    """n curves over 3 epochs: epoch 1 ranks like epoch 3 (``agree``) or is independent noise."""
    out = []
    for _ in range(n):
        final = rng.random()
        first = final * 0.5 + 0.01 * rng.random() if agree else rng.random()
        out.append({1: first, 2: (first + final) / 2, 3: final})
    return out


def test_a_rung_whose_early_accuracy_is_noise_never_stops_anything():
    rng = random.Random(0)
    rule = _gated()
    for k, curve in enumerate(_curves(rng, 40, agree=False)):
        # every trial reaches the rung, ranked: the worst of them would be stopped by the plain rule
        assert rule.on_result(k, 1, {"accuracy": curve[1], "flops": 1.0}) == CONTINUE
        rule.gate.add_curve(k, curve)
    ev = rule.gate.evidence(1)
    assert not ev.open and ev.n == 40 and abs(ev.tau) < 0.3
    assert ev.describe().startswith("epoch 1 waiting (tau ") and "< 0.6" in ev.describe()


def test_a_rung_opens_once_enough_curves_agree_and_then_stops():
    rng = random.Random(1)
    rule = _gated()
    curves = _curves(rng, 30, agree=True)
    for k in range(9):
        assert rule.on_result(k, 1, {"accuracy": curves[k][1], "flops": 1.0}) == CONTINUE
        rule.gate.add_curve(k, curves[k])
    ev = rule.gate.evidence(1)
    assert not ev.open and ev.describe() == "epoch 1 waiting (9 of 10 completed curves)"
    rule.gate.add_curve(9, curves[9])
    assert rule.gate.is_open(1) and rule.gate.evidence(1).describe().startswith("epoch 1 active (tau ")
    # Open: a trial worse than everything recorded at the rung is stopped; the earlier decisions stand.
    assert rule.on_result("worst", 1, {"accuracy": -1.0, "flops": 2.0}) == STOP
    assert all(rule.decision_at(k, 1) == CONTINUE for k in range(9))


def test_a_curve_that_did_not_reach_the_end_is_no_evidence():
    rule = _gated(min_curves=3)
    rule.gate.add_curve("stopped", {1: 0.2, 2: 0.3})
    rule.gate.add_curve("nan", {1: 0.2, 2: 0.3, 3: float("nan")})
    assert rule.gate.evidence(1).n == 0


def test_the_gate_survives_the_state_round_trip():
    rule = _gated(min_curves=7)
    assert MOASHA.from_state(rule.state()).gate.min_curves == 7
    assert MOASHA.from_state({**_gated(0).state()}).gate is None
