"""TPE learns from infeasible proposals (recorded PRUNED with their constraint) and stops repeating
them; random sampling cannot. Drives nas search's own searcher (bench/infeasible_learning.py)."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "infeasible_learning.py"


def test_tpe_proposes_fewer_infeasible_candidates_than_random_as_the_study_grows():
    spec = importlib.util.spec_from_file_location("infeasible_learning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        shares = module.main(["--proposals", "120", "--seeds", "1", "--window", "40"])
    finally:
        sys.modules.pop(spec.name, None)
    # resnest under 4 GFLOPs: about 60% of uniformly drawn candidates are over budget.
    assert shares["random"][-1] > 0.45
    assert shares["tpe"][-1] < 0.5 * shares["random"][-1]
    assert shares["tpe"][-1] < shares["tpe"][0]  # falling as the study grows
