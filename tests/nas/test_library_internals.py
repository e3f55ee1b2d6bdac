"""The private names of Optuna and Ray that nas relies on live in two adapters (nas.study.optuna_internals,
nas.cluster.ray_internals), which say in one sentence when the installed library is not the one they were
written for; no other module uses such a name."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cluster import ray_internals
from nas.study import optuna_internals

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = {ROOT / "nas" / "study" / "optuna_internals.py", ROOT / "nas" / "cluster" / "ray_internals.py"}

#: A private module or name of Optuna or Ray by its dotted path (``optuna.storages._rdb``,
#: ``ray._private.worker``), a private name imported from one of their modules, or one of the
#: private attributes the adapters wrap.
PRIVATE = re.compile(r"""
    \b(?:optuna|ray)(?:\.\w+)*\._\w+
  | \bfrom\s+(?:optuna|ray)(?:\.\w+)*\s+import\s+(?:\([^)]*?|[^(\n]*?)\b_\w+
  | \._(?:thread_local|cached_frozen_trial|metric)\b
  | \b(?:_CachedStorage|_get_constraints_from_system_attrs|get_session_dir_path)\b
""", re.VERBOSE)


def test_the_installed_optuna_and_ray_are_what_the_adapters_were_written_for():
    problems = optuna_internals.check() + ray_internals.check()
    assert not problems, "\n".join(problems)


@pytest.fixture
def unverified(monkeypatch):
    """Both adapters as if nothing had been used yet (first use checks again)."""
    for internals in (optuna_internals.INTERNALS, ray_internals.INTERNALS):
        monkeypatch.setattr(internals, "verified", set())


def test_a_new_optuna_major_is_named_and_refused_at_first_use(monkeypatch, unverified):
    monkeypatch.setattr(optuna_internals.INTERNALS, "version", lambda: "6.0.0")
    sentence = ("optuna 6.0.0 is installed but nas.study.optuna_internals was written for Optuna 5; pin optuna<6 or "
                "update nas/study/optuna_internals.py")
    assert optuna_internals.check() == [sentence]
    with pytest.raises(RuntimeError) as exc:
        optuna_internals.rdb_models()
    assert str(exc.value) == sentence


def test_a_changed_table_model_is_named(monkeypatch, unverified):
    from optuna.storages._rdb import models
    from sqlalchemy import Column, MetaData, Table

    class TrialModel:  # Optuna's, without its column "number"
        __table__ = Table("trials", MetaData(), *(Column(c.name, c.type, primary_key=c.primary_key)
                                                  for c in models.TrialModel.__table__.c if c.name != "number"))

    monkeypatch.setattr(models, "TrialModel", TrialModel)
    monkeypatch.setattr(optuna_internals.INTERNALS, "version", lambda: "5.9.0")
    assert optuna_internals.check() == [
        "optuna 5.9.0 is installed and nas.study.optuna_internals was written for Optuna 5 (tested with 5.1.0), "
        "but its private table models changed (TrialModel has no column 'number'); install optuna==5.1.0 or update "
        "nas/study/optuna_internals.py"]
    optuna_internals.frozen_copy(_frozen())  # its other names are as written for: their functions still work
    monkeypatch.setattr(optuna_internals.INTERNALS, "version", lambda: "6.0.0")
    sentence = ("optuna 6.0.0 is installed but nas.study.optuna_internals was written for Optuna 5: its private "
                "table models changed (TrialModel has no column 'number'); pin optuna<6 or update "
                "nas/study/optuna_internals.py")
    assert optuna_internals.check() == [sentence]
    with pytest.raises(RuntimeError, match=re.escape(sentence)):
        optuna_internals.rdb_models()


def test_a_missing_private_attribute_is_named(monkeypatch, unverified):
    from optuna.study.study import _ThreadLocalStudyAttribute

    monkeypatch.delattr(_ThreadLocalStudyAttribute, "cached_all_trials")
    problems = optuna_internals.check()
    assert len(problems) == 1 and "_ThreadLocalStudyAttribute has no cached_all_trials" in problems[0], problems
    with pytest.raises(RuntimeError, match="has no cached_all_trials"):
        optuna_internals.clear_trials_cache(object())


def test_a_changed_ray_is_named(monkeypatch, unverified):
    from ray._private.node import Node

    monkeypatch.delattr(Node, "get_session_dir_path")
    monkeypatch.setattr(ray_internals.INTERNALS, "version", lambda: "2.99.0")
    problems = ray_internals.check()
    assert problems == ["ray 2.99.0 is installed and nas.cluster.ray_internals was written for Ray 2 (tested with "
                        "2.60.0), but its session folder accessor (ray._private.worker.global_worker.node) changed "
                        "(Node has no get_session_dir_path); install ray==2.60.0 or update "
                        "nas/cluster/ray_internals.py"], problems
    with pytest.raises(RuntimeError, match="Node has no get_session_dir_path"):
        ray_internals.session_dir()
    monkeypatch.setattr(ray_internals.INTERNALS, "version", lambda: "3.0.0")
    assert ray_internals.check()[0].startswith(
        "ray 3.0.0 is installed but nas.cluster.ray_internals was written for Ray 2: ")
    assert ray_internals.check()[0].endswith("; pin ray[tune]<3 or update nas/cluster/ray_internals.py")


def test_importing_an_adapter_under_another_major_logs_and_does_not_raise():
    probe = ("import importlib.metadata as m; real = m.version\n"
             "m.version = lambda d: '6.0.0' if d == 'optuna' else '3.0.0' if d == 'ray' else real(d)\n"
             "import nas.study.optuna_internals as o, nas.cluster.ray_internals as r\n"
             "print(len(o.INTERNALS.at_import), len(r.INTERNALS.at_import))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["1", "1"]
    assert "optuna 6.0.0 is installed but nas.study.optuna_internals was written for Optuna 5" in run.stderr
    assert "ray 3.0.0 is installed but nas.cluster.ray_internals was written for Ray 2" in run.stderr


def test_no_other_module_uses_a_private_name_of_optuna_or_ray():
    found = []
    for folder in ("nas", "workers", "dashboards"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in ADAPTERS:
                continue
            text = path.read_text()
            for m in PRIVATE.finditer(text):
                found.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    assert not found, ("private names of Optuna or Ray belong in nas/study/optuna_internals.py or "
                       "nas/cluster/ray_internals.py:\n" + "\n".join(found))


def test_the_rule_would_catch_them():
    for line in ("from optuna.storages._rdb import models", "import ray._private.worker",
                 "ray._private.worker.global_worker.node", "from optuna.storages import _CachedStorage",
                 "study._thread_local.cached_all_trials = None", "trial._cached_frozen_trial.user_attrs",
                 "from optuna.study import (StudyDirection,\n    _SomethingPrivate)"):
        assert PRIVATE.search(line), line
    for line in ("from optuna.storages import RDBStorage", "import ray.tune", "study._study_id", "trial._trial_id",
                 "from optuna.trial import TrialState\n\nfrom nas.x import _mine",
                 "from nas.study.optuna_internals import rdb_of"):
        assert not PRIVATE.search(line), line


def test_frozen_copy_owns_its_containers():
    trial = _frozen()
    out = optuna_internals.frozen_copy(trial)
    out.params["x"] = 2
    out.user_attrs["a"] = 2
    out.system_attrs["s"] = 2
    out.values[0] = 9.0
    assert (trial.params, trial.user_attrs, trial.system_attrs, trial.values) == ({"x": 1}, {"a": 1}, {"s": 1}, [0.5])
    assert out.distributions == trial.distributions and out.distributions is not trial.distributions


def _frozen():
    from optuna.distributions import IntDistribution
    from optuna.trial import FrozenTrial, TrialState

    return FrozenTrial(number=0, state=TrialState.COMPLETE, value=0.5, datetime_start=None, datetime_complete=None,
                       params={"x": 1}, distributions={"x": IntDistribution(0, 3)}, user_attrs={"a": 1},
                       system_attrs={"s": 1}, intermediate_values={}, trial_id=0)
