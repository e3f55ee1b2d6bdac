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
