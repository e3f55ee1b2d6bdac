"""bench/latency_predictor.py at a small --n: two spaces, every predictor scored on held-out candidates.
The figures themselves depend on the machine (BENCHMARKS.md holds a full run); this checks the report is
whole and that the per-block table ranks the candidates of the space where latencies spread widely."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "latency_predictor.py"


@pytest.mark.slow
def test_latency_predictor_reports_every_predictor_on_two_spaces(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("latency_predictor", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        spaces = f"{ROOT / 'bench/data/tiny_space.yaml'},{ROOT / 'bench/data/tiny_latency_space.yaml'}"
        results = module.main(["--spaces", spaces, "--n", "8", "--fit", "4", "--table-dir", str(tmp_path),
                               "--json", str(tmp_path / "out.json")])
    finally:
        sys.modules.pop(spec.name, None)
    assert [r["space"] for r in results] == ["tiny", "tiny-latency"]
    for r in results:
        assert r["candidates"] == 8 and r["held_out"] == 4 and r["parts_in_table"] > 0
        assert set(r["predictors"]) == {"table", "flops", "params", "activations"}
        for s in r["predictors"].values():
            assert 0 <= s["within_10"] <= s["within_20"] <= 1 and -1 <= s["spearman"] <= 1
    # widths 16 and 128 spread latencies tenfold: the table must not rank them backwards
    assert results[1]["predictors"]["table"]["spearman"] > 0
    out = capsys.readouterr().out
    assert "within ±10 %" in out and "table" in out and (tmp_path / "out.json").exists()
    assert list(tmp_path.glob("latency-torch-*-1t.json"))  # the table file, named by runtime, device, threads
