"""What optuna-dashboard (0.21) shows of a nas study makes sense: objective names, the architecture
among the user attributes, and a Pareto front with no infeasible or partly trained trial.

optuna-dashboard is served in-process (``optuna_dashboard.wsgi``) and asked through its JSON API,
the same routes its web page calls. A study from a real ``nas search`` belongs here too, beside the
synthetic one, once searches run in the test suite."""

from __future__ import annotations

import json

import pytest

from nas.study.records import read_trials
from nas.study.storage import open_storage

optuna_dashboard = pytest.importorskip("optuna_dashboard")


def _get(client, path: str):
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.data[:300])
    return json.loads(r.data)


def test_optuna_dashboard_reads_a_nas_study(two_studies):
    from werkzeug.test import Client

    url, names = two_studies
    storage = open_storage(url, create=False)
    client = Client(optuna_dashboard.wsgi(storage))
    studies = {s["study_name"]: s for s in _get(client, "/api/studies")["study_summaries"]}
    assert set(names) <= set(studies)
    for name in names:
        detail = _get(client, f"/api/studies/{studies[name]['study_id']}")
        assert detail["objective_names"] == ["accuracy", "flops"]
        assert detail["directions"] == ["maximize", "minimize"]
        user_attr_keys = {a["key"] for a in detail["union_user_attrs"]}
        assert {"arch", "arch_hash", "config", "outcome", "flops", "n_params", "accuracy"} <= user_attr_keys
        trial = next(t for t in detail["trials"] if t["state"] == "Complete")
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert attrs["arch"].startswith("d") and "stages" in attrs["config"]
        # Its own front (it ignores constraints): nothing infeasible, pruned (partly trained) or failed.
        import optuna

        records = {r.number: r for r in read_trials(optuna.load_study(study_name=name, storage=storage))}
        best = [records[t["number"]] for t in detail["best_trials"]]
        assert best, name
        assert all(r.state == "COMPLETE" and r.feasible for r in best)
        assert not {r.outcome for r in best} & {"infeasible", "pruned", "invalid", "failed"}
        # Study user attributes: the settings, readable, and marked synthetic.
        study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
        assert study_attrs["synthetic"] == "True" and "budget" in study_attrs
