"""Suite-wide settings and shared fixtures.

One intra-op thread: CI and developer machines have 2 shared cores, and PyTorch's
OpenMP pool spin-waits; with two threads a busy neighbour slows small ops 20-fold.

The shapes cache goes to a temporary folder, never the user's ``~/.cache/nas``; it is
set before any Ray worker starts, so workers inherit it.
"""

import os
import tempfile

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
