"""The reaper ends what a SIGKILLed driver's cluster left running, and nothing else."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

DRIVER = textwrap.dedent("""
    import os, subprocess, sys
    from nas.cluster.reaper import Reaper

    reaper = Reaper(every_s=3600)  # the list never gets there: only the mark can find the process
    with reaper.marking():
        # like Ray's raylet starting an agent: a process of its own session, detached from the driver
        cluster = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                   start_new_session=True)
    unmarked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print(cluster.pid, unmarked.pid, reaper.proc.pid, flush=True)
    sys.stdin.read()
""")


def _gone(pid, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_killed_driver_leaves_no_marked_process_and_spares_the_rest():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cluster, unmarked, watcher = map(int, driver.stdout.readline().split())
    try:
        assert os.environ.get("NAS_CLUSTER") is None
        assert psutil.Process(cluster).environ().get("NAS_CLUSTER")
        assert psutil.Process(unmarked).environ().get("NAS_CLUSTER") is None  # started after the cluster
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert _gone(cluster), "the marked process outlived its dead driver"
        assert _gone(watcher), "the watcher did not exit after its sweep"
        assert psutil.pid_exists(unmarked) and not _gone(unmarked, timeout=0.5)
    finally:
        for pid in (cluster, unmarked):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


CLEAN = textwrap.dedent("""
    import subprocess, sys, time
    from nas.cluster.reaper import Reaper

    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    before = subprocess.Popen(sleep)  # e.g. a dashboard the embedding program started first
    reaper = Reaper(every_s=0.05)
    with reaper.marking():
        cluster = subprocess.Popen(sleep)  # a direct child, as Ray's raylet and GCS are
    after = subprocess.Popen(sleep)  # the program's own, started while the search runs
    time.sleep(1.0)  # the poller lists the cluster's processes several times
    reaper.close()
    print(before.pid, cluster.pid, after.pid, reaper.proc.pid, flush=True)
    sys.stdin.read()
""")


def test_a_clean_exit_ends_only_the_cluster_not_the_programs_other_children():
    driver = subprocess.Popen([sys.executable, "-c", CLEAN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    before, cluster, after, watcher = map(int, driver.stdout.readline().split())
    try:
        assert _gone(cluster), "the cluster's process outlived the search"
        assert _gone(watcher)
        for pid in (before, after):
            assert not _gone(pid, timeout=0.5), "a process the program started itself was ended"
    finally:
        driver.kill()
        for pid in (before, cluster, after):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
