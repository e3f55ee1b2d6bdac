"""Reading studies: the fast reader agrees with Optuna's own, choosing studies, and never writing."""

from __future__ import annotations

import hashlib
import sqlite3

import optuna
import pytest

from nas.common.errors import UserError
from nas.dashboards.studies import StudySource, open_sources
from nas.study.records import read_trials
from nas.study.storage import open_storage


def _content(url: str) -> str:
    """The database's content, logically (a WAL checkpoint may rewrite the file's bytes)."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


def test_fast_reader_equals_optunas_reading(synthetic, tmp_path):
    """Every outcome (complete, pruned, infeasible, invalid, duplicate, failed, orphaned, interrupted)
    and trials written by ask-and-tell (constraints via set_constraint): the records the dashboards
    read equal ``nas.study.records.read_trials(study)``, and a refresh reads only what changed."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url)
    study = synthetic.make_study(storage, "synthetic-read", space="resnest-cifar", n=80, high=1e9, seed=8)
    synthetic.write_live(storage, study.study_name, space="resnest-cifar", interval=0.0, count=6, high=1e9, seed=9)
    running = study.ask()  # a trial in flight, no attributes yet
    source = StudySource(open_storage(url, create=False), study.study_name)
    assert source._reader is not None  # SQLite: the fast path
    fast = source.records()
    slow = read_trials(optuna.load_study(study_name=study.study_name, storage=open_storage(url, create=False)))
    assert [r.to_dict() for r in fast] == [r.to_dict() for r in slow]
    outcomes = {r.outcome for r in fast}
    assert {"complete", "pruned", "infeasible", "duplicate", "failed", "running"} <= outcomes
    assert any(r.constraints for r in fast) and any(not r.feasible for r in fast)
    # The running trial finishes and a new one lands: the next read has both, the rest from the cache.
    running.set_user_attr("outcome", "failed")
    study.tell(running, state=optuna.trial.TrialState.FAIL)
    synthetic.write_live(storage, study.study_name, space="resnest-cifar", interval=0.0, count=1, high=1e9, seed=10)
    again = source.records()
    assert len(again) == len(fast) + 1 and again[running.number].outcome == "failed"
    assert again[0] is fast[0]  # finished trials are not read twice


def test_journal_storage_reads_through_optuna(synthetic, tmp_path):
    url = f"journal:{tmp_path / 'j.log'}"
    synthetic.make_study(open_storage(url), "synthetic-journal", space="resnest-cifar", n=20, high=1e9)
    sources, _ = open_sources(url, None)
    assert sources[0]._reader is None
    data = sources[0].read()
    assert len(data.records) == 20 and data.synthetic and data.objectives == ("accuracy", "flops")


def test_choosing_studies(two_studies):
    url, names = two_studies
    with pytest.raises(UserError, match=r"holds 3 studies; pick one with --study: .*synthetic-resnest"):
        open_sources(url, None)
    with pytest.raises(UserError, match=r"no study named 'nope' in storage .* \(studies: .*synthetic-empty"):
        open_sources(url, ["nope"])
    sources, _ = open_sources(url, [names[1], names[0], names[1]])  # repeats collapse, order kept
    assert [s.name for s in sources] == [names[1], names[0]]


def test_missing_storage_is_not_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(UserError, match="no study storage"):
        open_sources(url, None)
    assert not (tmp_path / "typo.db").exists()


def test_reading_never_writes(two_studies):
    url, names = two_studies
    before = _content(url)
    for s in open_sources(url, names)[0]:
        s.read()
        s.read()
    assert _content(url) == before


def test_a_foreign_study_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    optuna.create_study(storage=open_storage(url), study_name="someone-elses", directions=["minimize"])
    with pytest.raises(UserError, match="not made by 'nas search'"):
        open_sources(url, None)


def test_status_shows_each_rung_as_active_or_waiting(one_study, capsys):
    """``nas status`` measures each rung's rank agreement with the final accuracy on the study's
    completed curves, as a resumed search would, and says whether the rung may stop trials."""
    import json

    from nas.cli import main
    from nas.stopping.rule import GATE_MIN_CURVES, GATE_MIN_TAU

    url, name = one_study
    assert main(["status", "--storage", url, "--study", name, "--json"]) == 0
    rungs = json.loads(capsys.readouterr().out)["rungs"]
    assert rungs and all(r["n"] >= GATE_MIN_CURVES for r in rungs)
    for r in rungs:
        assert r["active"] == (r["tau"] >= GATE_MIN_TAU)
    assert main(["status", "--storage", url, "--study", name]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("rungs     "))
    assert all(f"epoch {r['rung']} {'active' if r['active'] else 'waiting'} (tau {r['tau']:.2f} over {r['n']}"
               in line for r in rungs)
