"""Execution on Ray: start or join a cluster, then run the trials through Ray Tune, quietly.

* No address (and no ``RAY_ADDRESS``): a local cluster is started for the search and shut down
  after it. With one, the cluster is joined, after probing the address with a socket:
  ``ray.init`` to an address with nothing listening retries for about 14 minutes.
* Tune writes its experiment state to a temporary folder removed at the end, prints nothing
  (our progress is the only output), installs no SIGINT handler (we stop it gracefully
  ourselves, see :class:`Interrupt`), and retries a trial only when its worker process dies
  (``FailureConfig``): the trainable returns every other failure as a result.
* ``reuse_actors=True`` (a worker trains candidate after candidate; Tune's per-trial cost drops
  from about 1 s to 90 ms) and ``max_concurrent_trials`` (a custom searcher otherwise gets one
  pending trial at a time). ``tune.with_resources`` always with a CPU count: a GPU-only request
  reserves zero CPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nas.common.errors import UserError

# Read by Ray Tune when it is imported or a Tuner is built: set before either.
_TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard files per trial
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C is ours: see Interrupt
    "TUNE_WARN_THRESHOLD_S": "1000000",  # no "operation took X s" warnings on a busy machine
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "1000000",
    "TUNE_WARN_SLOW_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000000",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000000",
    "TUNE_GLOBAL_CHECKPOINT_S": "1000000",  # Tune's own experiment snapshots: the study is the record
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_V2_ENABLED": "0",
}
_QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air", "ray.data")


def quiet_ray() -> None:
    for key, value in _TUNE_ENV.items():
        os.environ.setdefault(key, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass
class Cluster:
    address: str | None  # None: a local cluster
    cpus: float
    gpus: float
    nodes: int
    owned: bool  # started by this process: shut it down at the end
    resources: dict[str, float] = field(default_factory=dict)  # every resource of the cluster, in total
    reaper: Any = None  # for an owned cluster: ends its processes if this driver dies (nas.cluster.reaper)

    def describe(self) -> str:
        where = "local cluster" if self.address is None else f"cluster at {self.address}"
        gpus = f", {self.gpus:g} GPUs" if self.gpus else ", no GPU"
        nodes = f" on {self.nodes} nodes" if self.nodes > 1 else ""
        return f"{where}: {self.cpus:g} CPUs{gpus}{nodes}"


def probe_address(address: str) -> None:
    """Refuse, in seconds, an address where nothing listens."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UserError(f"--address {address!r}: expected HOST:PORT (the head's 'ray start --head --port P')")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"--address {address}: nothing is listening there ({exc.strerror or exc}); start a "
                        f"cluster with 'ray start --head --port {port}' or leave --address out for a local "
                        f"one") from None


def connect(address: str | None, num_cpus: int | None = None) -> Cluster:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), or start a local one."""
    quiet_ray()
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        probe_address(address)
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True,
                                  ignore_reinit_error=True)
    owned = False
    if ray.is_initialized():
        pass  # an embedding program (or the test suite) already holds a session: use it
    elif address:
        try:
            with _quiet_stderr():  # Ray's C++ client retries loudly before it gives up
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as exc:
            hint = ("; a cluster made by 'ray start' uses token authentication: join it with RAY_AUTH_MODE=token "
                    "and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)" if "RAY_AUTH_MODE" not in os.environ else "")
            raise UserError(f"--address {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]}){hint}") \
                from None
    reaper = None
    if not ray.is_initialized() and not address:
        from nas.cluster.reaper import Reaper

        reaper = Reaper()  # its own session: it outlives this process, however that ends (even in ray.init)
        with reaper.marking():
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
        owned = True
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return Cluster(address=address, cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)), nodes=nodes,
                   owned=owned, reaper=reaper, resources={k: float(v) for k, v in res.items()})


@contextlib.contextmanager
def _quiet_stderr():
    """Send the process's stderr (file descriptor 2, where C++ libraries write) to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def disconnect(cluster: Cluster) -> None:
    import ray

    if cluster.owned and ray.is_initialized():
        ray.shutdown()
    if cluster.reaper is not None:
        cluster.reaper.close()


class Interrupt:
    """SIGINT and SIGTERM ask the search to stop gracefully: Tune stops its trials, the driver
    records them as interrupted and queued, and the command exits 130 (SIGINT) or 143 (SIGTERM).
    A second signal interrupts at once."""

    def __init__(self, on_first: Callable[[str], None] | None = None) -> None:
        self.event = threading.Event()
        self.exit_code: int | None = None
        self._on_first = on_first
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.exit_code = 128 + signum
        self.event.set()
        if self._on_first:
            self._on_first(signal.Signals(signum).name)

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_tune(searcher: Any, resources: dict[str, float], max_concurrent: int, interrupt: Interrupt,
             on_step: Callable[[], None], scheduler: Any = None, max_failures: int = 2,
             trainable: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run trials until the searcher is finished or ``interrupt`` is set. ``trainable`` replaces the
    real one (:func:`~nas.workers.tune_trainable.tune_trainable`) in benchmarks of the orchestration."""
    quiet_ray()
    from ray import tune

    from nas.workers.tune_trainable import tune_trainable

    storage = tempfile.mkdtemp(prefix="nas-tune-")
    name = os.path.basename(storage)  # Tune's experiment folder: unique, so it is found again to be removed
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable or tune_trainable, resources),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, stop=_interrupt_stopper(interrupt),
                                      callbacks=[_tick_callback(on_step, getattr(searcher, "tune_trials", None))],
                                      failure_config=tune.FailureConfig(max_failures=max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        tuner.fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        remove_staged(name)


def _remove_staged_here(pattern: str) -> int:
    """Remove this node's copies of a Tune experiment: Tune stages the experiment's state and every
    trial's working folder under the node's Ray session, beside ``storage_path``; ``pattern`` is
    where, relative to the session folder (:func:`nas.cluster.ray_internals.staged_glob`). Returns how many
    folders went."""
    import glob

    from nas.cluster.ray_internals import session_dir

    found = glob.glob(os.path.join(session_dir(), pattern))
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # the run's <time> folder, when nothing else is in it
    return len(found)


def remove_staged(name: str, timeout_s: float = 10.0) -> int:
    """Remove what Tune staged for experiment ``name`` on every live node (a CPU-less task per node,
    so a cluster busy with another job's trials still runs it). Returns how many folders went."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from nas.cluster.ray_internals import staged_glob

    if not ray.is_initialized():
        return 0
    pattern = staged_glob(name)  # Tune's layout, checked here, where Tune is imported: the tasks need not import it
    task = ray.remote(num_cpus=0, max_retries=0)(_remove_staged_here)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(pattern)
            for n in ray.nodes() if n.get("Alive")]
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    removed = 0
    for ref in done:
        with contextlib.suppress(Exception):
            removed += ray.get(ref)
    return removed


# Tune pickles its stopper, callbacks and search algorithm into its experiment folder (for
# Tuner.restore, which a search never uses: it resumes from the study). These hold live objects
# (locks, the study), so they pickle to nothing; module-level classes, so no closure is pickled.


def _interrupt_stopper(interrupt: Interrupt) -> Any:
    from ray.tune.stopper import Stopper

    class StopWhenInterrupted(Stopper):
        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.event.is_set()

    StopWhenInterrupted.__module__, StopWhenInterrupted.__qualname__ = __name__, "StopWhenInterrupted"
    globals()["StopWhenInterrupted"] = StopWhenInterrupted
    return StopWhenInterrupted(interrupt.event)


def _tick_callback(on_step: Callable[[], None], registry: dict[str, Any] | None) -> Any:
    """Calls ``on_step`` every controller step, and files every Tune trial object in ``registry``
    by id (the searcher reads a failed trial's error from it: Tune tells searchers only that it failed)."""
    from ray.tune import Callback

    class Tick(Callback):
        def __init__(self, fn: Callable[[], None], trials: dict[str, Any] | None) -> None:
            self.fn, self.trials = fn, trials

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            self.fn()

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.trials is not None:
                self.trials[trial.trial_id] = trial

    Tick.__module__, Tick.__qualname__ = __name__, "Tick"
    globals()["Tick"] = Tick
    return Tick(on_step, registry)
