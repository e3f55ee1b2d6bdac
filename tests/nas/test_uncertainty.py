"""Accuracy carries its standard error (from the validation size), and front members that the study
cannot tell apart by accuracy are marked as such: in the front table, ``nas pareto --json`` and export."""

import math

import pytest

from nas.search.progress import front_header, front_rows
from nas.study.records import TrialRecord, noise_neighbours, standard_error, within_noise


def _rec(number, acc, flops, n=1000):
    return TrialRecord(number=number, state="COMPLETE", outcome="complete", values=(acc, flops), params={},
                       feasible=True, attrs={"accuracy": acc, "flops": flops, "val_images": n, "arch": f"a{number}"})


def test_standard_error_is_binomial():
    assert standard_error(0.5, 1000) == pytest.approx(math.sqrt(0.25 / 1000))  # 1.6 points
    assert standard_error(0.5, 1000) == pytest.approx(0.0158, abs=1e-4)
    assert standard_error(0.9, 100) == pytest.approx(0.03)
    assert standard_error(None, 1000) is None and standard_error(0.5, None) is None and standard_error(0.5, 0) is None


def test_within_noise_depends_on_the_validation_size():
    # 0.546 vs 0.526: 2 points apart; at 1,000 images each the difference's SE is 2.2 points -> noise
    assert within_noise(_rec(0, 0.546, 1), _rec(1, 0.526, 1))
    # the same gap measured on 20,000 images each is real
    assert not within_noise(_rec(0, 0.546, 1, n=20000), _rec(1, 0.526, 1, n=20000))
    # unknown validation size: nothing is claimed
    unknown = _rec(2, 0.53, 1, n=None)
    assert not within_noise(_rec(0, 0.546, 1), unknown)


def test_front_table_marks_members_within_noise():
    front = [_rec(0, 0.546, 3e9), _rec(3, 0.536, 2e9), _rec(17, 0.40, 1e9)]
    assert noise_neighbours(front) == {0: [3], 3: [0], 17: []}
    header = front_header(("accuracy", "flops"), 224)
    rows = front_rows(front, ("accuracy", "flops"))
    col = header.index("within noise of")
    assert header[1] == "accuracy ±se" and [r[col] for r in rows] == ["3", "0", "-"]
    assert rows[0][1] == "0.546 ±0.016"


def test_candidates_within_noise_of_chance_are_named_at_the_end():
    from nas.search.run import chance_note
    from nas.study.records import near_chance

    # 10 classes on 1,000 images: chance 0.10 with a standard error of 0.95 points, so up to 0.1186 is noise
    assert near_chance(_rec(0, 0.117, 1), 10) and not near_chance(_rec(1, 0.120, 1), 10)
    assert not near_chance(_rec(2, 0.117, 1, n=20000), 10)  # on 20,000 images 0.117 is measurably above
    assert not near_chance(_rec(3, 0.10, 1, n=None), 10)  # unknown validation size: nothing is claimed
    records = [_rec(0, 0.536, 1), _rec(1, 0.166, 1), _rec(3, 0.117, 1), _rec(5, 0.098, 1)]
    note = chance_note(records, 10)
    assert note.startswith("2 of 4 trained candidates ended within noise of chance (0.10 for 10 classes; trials 3, 5)")
    assert "try a lower --lr or more --train-images" in note
    assert chance_note(records[:2], 10) is None


def test_the_chance_note_on_the_recorded_resnest_proxy_that_did_not_train():
    """bench/data/proxy_fidelity.db: resnest at 1 epoch x 20,000 and lr 0.1 left one candidate at 0.117 on
    1,000 images (chance 0.10), within noise of it; the others of that run are measurably above."""
    from pathlib import Path

    import optuna

    from nas.search.run import chance_note
    from nas.study.records import read_settings, read_trials

    db = Path(__file__).parents[2] / "bench" / "data" / "proxy_fidelity.db"
    study = optuna.load_study(study_name="panel-resnest@fidelity-e1-n20000-v1000-b64-lr0.1-s0",
                              storage=f"sqlite:///{db}")
    records, settings = read_trials(study), read_settings(study)
    low = [r for r in records if r.scored and r.accuracy < 0.1186]
    assert len(low) == 1 and settings.classes == 10
    assert chance_note(records, settings.classes).startswith(
        f"1 of 5 trained candidates ended within noise of chance (0.10 for 10 classes; trial {low[0].number})")
