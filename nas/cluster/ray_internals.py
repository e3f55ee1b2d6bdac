"""Every private name of Ray and Tune that nas uses, in one place, checked against the installed Ray.

Ray's public API does not offer these (each function below says why nas needs it):

* :func:`session_dir`: this node's Ray session folder
  (``ray._private.worker.global_worker.node.get_session_dir_path()``).
* :func:`staged_glob`: where Tune stages an experiment under that folder
  (``artifacts/<time>/<experiment>``), a layout no public API names.
* :func:`unset_metric`: a trial scheduler's metric field (``TrialScheduler._metric``).

What would break on an upgrade: any of these may change in any Ray release (they are private). A
moved session accessor or a new staging layout would leave every search's staged trial folders
behind on every node (a search's cleanup removes them by this layout); a scheduler whose ``metric``
reads another field would make Tune demand a single metric in every result, which MO-ASHA does not
report. :func:`check` says which, in one sentence each; ``tests/nas/test_library_internals.py``
runs it, and ``pyproject.toml`` pins ``ray[tune]<3``.

Checks (:class:`nas.study.optuna_internals.Internals`, as for Optuna): at import, the installed version
and every private name whose Ray module is already imported (a Ray task that only needs the
session folder does not import Tune for it); a problem is logged, never raised. :func:`check`
checks every name, importing what it must; each function checks its own names on first use and
raises ``RuntimeError`` with the sentence when they are not what this module was written for.

nas/ reads Tune's ``Trial`` objects only through public attributes (``trial_id``, ``config``,
``num_failures``, ``error_file``); workers/ and dashboards/ use no private name of Ray.
"""

from __future__ import annotations

import os
from typing import Any

from nas.study.optuna_internals import Internals

__all__ = ["INTERNALS", "TESTED", "WRITTEN_FOR", "check", "session_dir", "staged_glob", "unset_metric"]

#: The Ray major version this module was written for, and the release it was tested with.
WRITTEN_FOR, TESTED = 2, "2.60.0"

INTERNALS = Internals("ray", "Ray", __name__, WRITTEN_FOR, TESTED, f"ray[tune]<{WRITTEN_FOR + 1}")


@INTERNALS.probe("session", "its session folder accessor (ray._private.worker.global_worker.node)",
                 "ray._private.worker")
def _session() -> str | None:
    from ray._private import worker
    from ray._private.node import Node

    if not hasattr(getattr(worker, "global_worker", None), "node"):
        return "ray._private.worker.global_worker has no node"
    return None if callable(getattr(Node, "get_session_dir_path", None)) else "Node has no get_session_dir_path"


@INTERNALS.probe("staging", "Tune's staging layout (<session>/artifacts/<time>/<experiment>)",
                 "ray.train._internal.storage")
def _staging() -> str | None:
    from ray.train import constants
    from ray.train._internal.storage import StorageContext

    if "artifacts" not in constants._get_ray_train_session_dir.__code__.co_consts:
        return "ray.train.constants._get_ray_train_session_dir no longer stages under 'artifacts'"
    missing = {"_get_ray_train_session_dir", "_timestamp", "experiment_dir_name"} \
        - set(StorageContext._get_session_path.__code__.co_names)
    return f"StorageContext._get_session_path no longer uses {sorted(missing)[0]}" if missing else None


@INTERNALS.probe("metric", "its scheduler's metric field (TrialScheduler._metric)",
                 "ray.tune.schedulers.trial_scheduler")
def _metric() -> str | None:
    from ray.tune.schedulers.trial_scheduler import TrialScheduler

    prop = vars(TrialScheduler).get("metric")
    if not isinstance(prop, property) or "_metric" not in prop.fget.__code__.co_names:
        return "TrialScheduler.metric no longer reads _metric"
    return None


def check() -> list[str]:
    """One sentence per private name of Ray that is not what this module was written for (empty: all fine)."""
    return INTERNALS.check()


INTERNALS.check_at_import()


# ---- the adapters ---------------------------------------------------------------------------------------
def session_dir() -> str:
    """This node's Ray session folder (Ray must be initialised in this process). Public API: none
    that is the same folder by contract (``RuntimeContext.get_temp_dir()`` joined with
    ``get_session_name()`` happens to be, on Ray 2.60); Tune finds its staging root through this
    same node object (``ray.train.constants._get_ray_train_session_dir``)."""
    INTERNALS.require("session")
    import ray

    return ray._private.worker.global_worker.node.get_session_dir_path()


def staged_glob(name: str) -> str:
    """The folders Tune stages experiment ``name`` in (its state and every trial's working folder),
    as a glob relative to a node's :func:`session_dir`: ``artifacts/<time>/<name>``, beside the
    Tuner's ``storage_path``, which is all a public API says of it."""
    INTERNALS.require("staging")
    return os.path.join("artifacts", "*", name)


def unset_metric(scheduler: Any) -> None:
    """Keep a Tune scheduler's ``metric`` None (a read-only property over ``_metric``), so Tune
    never demands that metric in a result: a multi-objective scheduler has none."""
    INTERNALS.require("metric")
    scheduler._metric = None
