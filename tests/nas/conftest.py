import os
import signal
import subprocess
import sys
import time

import optuna
import pytest


class SearchProcess:
    """A real ``nas search`` process (its own local Ray cluster), watched through its SQLite study."""

    def __init__(self, db, args, study="tiny-5MFLOPs"):
        self.db, self.args, self.study = db, list(map(str, args)), study
        self.proc = None

    def start(self):
        env = {**os.environ, "NAS_STORAGE": f"sqlite:///{self.db}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", *self.args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        return self

    def trials(self):
        try:
            return optuna.load_study(study_name=self.study, storage=f"sqlite:///{self.db}").trials
        except Exception:  # not created yet, or mid-creation
            return []

    def wait_for(self, ready, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.communicate()[1]
                raise AssertionError(f"search ended early ({self.proc.returncode}): {err[-2000:]}")
            if ready(self.trials()):
                return
            time.sleep(0.3)
        raise AssertionError("timed out waiting for the search")

    def signal(self, sig, timeout=60):
        self.proc.send_signal(sig)
        return self.proc.communicate(timeout=timeout)

    def run(self, timeout=400):
        """Start and wait for the end; returns (exit status, stdout, stderr)."""
        self.start()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def cleanup(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever the driver's local cluster left behind
            except ProcessLookupError:
                pass


@pytest.fixture
def search_process():
    """``search_process(db, args)`` -> a :class:`SearchProcess`; every one is killed at teardown."""
    made = []

    def make(db, args, study="tiny-5MFLOPs"):
        made.append(SearchProcess(db, args, study))
        return made[-1]

    yield make
    for p in made:
        p.cleanup()
