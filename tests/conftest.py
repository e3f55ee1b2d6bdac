"""Suite-wide settings and shared fixtures.

One intra-op thread: CI and developer machines have 2 shared cores, and PyTorch's
OpenMP pool spin-waits; with two threads a busy neighbour slows small ops 20-fold.

The shapes cache goes to a temporary folder, never the user's ``~/.cache/nas``; it is
set before any Ray worker starts, so workers inherit it.
"""

import os
import socket
import tempfile
import uuid

import pytest
import torch

torch.set_num_threads(1)
os.environ["NAS_CACHE"] = tempfile.mkdtemp(prefix="nas-test-cache-")


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the whole suite (``ray.init(num_cpus=2)``)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


POSTGRES_URL = os.environ.get("NAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url():
    """The machine's PostgreSQL (trust auth, database ``test``). Skipped with its reason where none
    answers, unless ``NAS_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it, so CI never skips silently)."""
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    try:
        socket.create_connection((url.host, url.port or 5432), timeout=3).close()
    except OSError as exc:
        if os.environ.get("NAS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"NAS_REQUIRE_POSTGRES=1 but nothing answers at {url.host}:{url.port or 5432} ({exc})")
        pytest.skip(f"no PostgreSQL at {url.host}:{url.port or 5432} ({exc}); .ci/run makes this mandatory")
    return POSTGRES_URL


@pytest.fixture
def study_name():
    """A study name no other test (or earlier run against the shared PostgreSQL) has used."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fresh_postgres_url(postgres_url):
    """A new, empty PostgreSQL database (no Optuna tables: what a user's first search meets),
    dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nas_fresh_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: Fixtures that start a Ray cluster, a search process or a browser: a test using one is slow.
SLOW_FIXTURES = frozenset({"ray_cluster", "search_process", "browser"})
#: Modules that train, kill or start processes throughout (fault injection, reapers, clusters).
SLOW_MODULES = frozenset({"test_faults.py", "test_multi_driver.py", "test_reaper.py", "test_cluster.py",
                          "test_workers_learnability.py", "test_early_stopping_replay.py",
                          "test_infeasible_learning.py", "test_cli_dashboard.py"})
#: Single tests that train or sample for more than about ten seconds on 2 busy cores.
SLOW_TESTS = frozenset({"test_channels_last_on_cpu_trains_like_contiguous",
                        "test_train_writes_weights_metrics_and_config",
                        "test_sampling_stops_when_the_space_is_exhausted",
                        "test_run_trial_returns_json_ready_metrics_and_complexity"})


def pytest_collection_modifyitems(config, items):
    """The fast tier (``python -m pytest -m "not slow"``, minutes on 2 cores) leaves out every test
    that needs a cluster, a browser or real training; CI runs everything."""
    for item in items:
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SLOW_MODULES
                or item.name.split("[")[0] in SLOW_TESTS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def cli(capsys):
    """Run ``nas ARGV`` in-process; returns (exit status, stdout, stderr) whether main returns the
    status or argparse exits with it."""
    from nas.cli import main

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
