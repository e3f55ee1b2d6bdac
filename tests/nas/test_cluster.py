"""``nas search`` on real multi-node Ray clusters: nodes started with ``ray start`` on loopback, and
``ray.cluster_utils.Cluster`` for placement. Each search runs as its own driver process."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from real_format_files import write_cifar10

from nas.study.records import read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = Path(__file__).parents[2] / "bench" / "data" / "small_space.yaml"
FAST = ["--sampler", "random", "--epochs", "1", "--batch-size", "16", "--no-early-stopping"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(db, study):
    return read_trials(optuna.load_study(study_name=study, storage=f"sqlite:///{db}"))


@pytest.fixture
def ray_start_cluster(tmp_path):
    """A head and one more node, each a ``ray start --block`` in a session of its own (killed at
    teardown), with its own environment: ``nodes(head_env, node_env)`` returns the address."""
    procs = []

    def start(head_env=None, node_env=None):
        port = _free_port()
        common = ["--num-cpus", "1", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
        ray = str(Path(sys.executable).with_name("ray"))
        procs.append(subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard=false",
                                       *common],
                                      env={**os.environ, **(head_env or {})}, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # the head answers before a second node may join
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        # Ray 2.60 clusters use token authentication; a joining node sends the token (this
        # machine's ~/.ray/auth_token) only when told to.
        procs.append(subprocess.Popen([ray, "start", "--address", address, *common],
                                      env={**os.environ, "RAY_AUTH_MODE": "token", **(node_env or {})},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        return address

    yield start
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_nodes(address, n, timeout=90):
    code = f"import os; os.environ['RAY_AUTH_MODE'] = 'token'; import ray; " \
           f"ray.init(address='{address}', log_to_driver=False); print(sum(1 for x in ray.nodes() if x['Alive']))"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if r.returncode == 0 and int(r.stdout.strip().splitlines()[-1]) >= n:
            return
        time.sleep(1)
    raise AssertionError(f"{n} Ray nodes did not come up")


def _search(db, *args, env=None, timeout=400):
    r = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--space", str(SMALL), "--budget", "6M",
                        "--storage", str(db), *map(str, args)], env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def test_trials_spread_over_nodes_and_missing_data_names_the_node(ray_start_cluster, tmp_path):
    good, missing = tmp_path / "data", tmp_path / "not-on-this-node"
    write_cifar10(good, per_batch=40)
    address = ray_start_cluster({"NAS_DATA": str(good)}, {"NAS_DATA": str(missing)})
    _wait_nodes(address, 2)
    db = tmp_path / "nas.db"
    code, out, err = _search(db, "--address", address, "--trials", "6", "--dataset", "cifar10",
                             "--train-images", "64", "--val-images", "16", *FAST,
                             env={"NAS_DATA": str(good), "RAY_AUTH_MODE": "token"})
    assert code == 0, err[-3000:]
    assert f"cluster at {address}: 2 CPUs, no GPU on 2 nodes" in out
    trained = [r for r in _records(db, "small-6MFLOPs") if r.trained]
    assert len(trained) == 6 and all(r.get("node") and r.get("host") for r in trained)
    nodes = {r.get("node") for r in trained}
    assert len(nodes) == 2  # both nodes trained
    failed = [r for r in trained if r.outcome == "failed"]
    complete = [r for r in trained if r.outcome == "complete"]
    assert failed and complete and {r.get("node") for r in failed}.isdisjoint({r.get("node") for r in complete})
    for r in failed:  # one line, naming what is missing and where
        reason = r.get("reason")
        assert "\n" not in reason and str(missing) in reason and f"on node {r.get('node')[:8]}" in reason
        assert not r.get("restarts")  # a missing folder is a result, not retried


def test_gpu_request_on_a_gpu_less_cluster_is_refused_before_any_trial(ray_start_cluster, tmp_path):
    address = ray_start_cluster()
    _wait_nodes(address, 2)
    start = time.monotonic()
    code, _, err = _search(tmp_path / "nas.db", "--address", address, "--gpus-per-trial", "1", *FAST,
                           env={"RAY_AUTH_MODE": "token"})
    assert code == 2 and err.startswith("error: --gpus-per-trial 1 but the Ray cluster has no GPU")
    assert time.monotonic() - start < 60 and not (tmp_path / "nas.db").exists()


def test_placement_on_a_cluster_utils_cluster(tmp_path):
    """A head with no CPU, a plain node and a node with a custom resource: trials that need the
    resource land on its node; others use both nodes."""
    script = textwrap.dedent(f"""
        import json, sys
        import ray
        from ray.cluster_utils import Cluster
        from nas.cli import main
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 0}})
        plain = cluster.add_node(num_cpus=2)
        fast = cluster.add_node(num_cpus=2, resources={{"fast": 2}})
        cluster.wait_for_nodes()
        common = ["search", "--space", {str(SMALL)!r}, "--budget", "6M", "--epochs", "1",
                  "--train-images", "64", "--val-images", "16", "--batch-size", "16", "--sampler", "random",
                  "--no-early-stopping", "--address", cluster.address]
        a = main(common + ["--trials", "2", "--storage", {str(tmp_path / 'a.db')!r}, "--trial-resources", "fast=1"])
        b = main(common + ["--trials", "4", "--storage", {str(tmp_path / 'b.db')!r}])
        print(json.dumps({{"codes": [a, b], "fast": fast.node_id, "plain": plain.node_id}}))
        ray.shutdown()
        cluster.shutdown()
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["codes"] == [0, 0]
    pinned = {x.get("node") for x in _records(tmp_path / "a.db", "small-6MFLOPs") if x.trained}
    assert pinned == {info["fast"]}
    spread = {x.get("node") for x in _records(tmp_path / "b.db", "small-6MFLOPs") if x.trained}
    assert spread == {info["fast"], info["plain"]}
