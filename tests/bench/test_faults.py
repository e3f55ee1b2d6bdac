"""Every fault of bench/faults.py injected into real searches: nothing trained is lost or repeated.

Each scenario runs real ``nas search`` processes (their own local Ray clusters); PostgreSQL is the
machine's (mandatory in CI, skipped with its reason elsewhere)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


@pytest.fixture(scope="module")
def faults():
    spec = importlib.util.spec_from_file_location("faults", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def baseline():
    # The tests check what is lost or repeated, not wall time (BENCHMARKS.md has that, against a
    # clean search): no clean search is run for the ratio here.
    return 1.0


@pytest.mark.parametrize("scenario", ["die", "raise", "nan", "oom", "slow", "driver-kill", "driver-signals",
                                      "readers", "postgres-drop"])
def test_fault_loses_and_repeats_nothing(faults, baseline, scenario, tmp_path, request):
    if scenario == "postgres-drop":
        request.getfixturevalue("postgres_url")
    if scenario in ("die", "raise", "nan", "oom", "slow"):
        row = faults.trial_fault(scenario, tmp_path, baseline)
    else:
        row = {"driver-kill": faults.driver_kills, "driver-signals": faults.driver_signals,
               "readers": faults.readers, "postgres-drop": faults.postgres_drops}[scenario](tmp_path, baseline)
    assert row.injected >= (10 if scenario == "driver-kill" else 1)
    assert (row.lost, row.repeated, row.notes if scenario != "readers" else row.notes[:-1]) == (0, 0, [])
