"""The real refinement of BENCHMARKS.md ("A real refinement on the CPU"), replayed from the committed
studies: what `nas space refine` and `nas space compare` print on them is what the write-up quotes."""

import sqlite3
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DATA = ROOT / "bench" / "data" / "refine_real.db"


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    """A copy of the committed studies (reading a database may write beside it)."""
    copy = tmp_path_factory.mktemp("refine-real") / "refine_real.db"
    with sqlite3.connect(DATA) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    return str(copy)


def _quoted(line: str) -> bool:
    return line.strip() in (ROOT / "BENCHMARKS.md").read_text()


def test_the_parent_population_refines_to_nothing_under_the_rule(cli, storage, tmp_path):
    out = tmp_path / "r.yaml"
    code, stdout, err = cli("space", "refine", "--study", "pop-A", "--storage", storage, "-o", out)
    assert code == 0 and "no refinement accepted: nothing written" in err and not out.exists()
    (row,) = [line for line in stdout.splitlines() if line.startswith("drop stage1.depth=1 ")]
    assert "reject not shown better (p 0.038" in row


@pytest.mark.parametrize("parent, child", [("pop-A", "pop-A-r"), ("pop-A-r", "pop-A-r-r")])
def test_each_step_of_the_lineage_is_judged_as_the_write_up_says(cli, storage, parent, child):
    code, stdout, err = cli("space", "compare", "--study", parent, "--study", child, "--storage", storage)
    assert code == 0, err
    (verdict,) = [line for line in stdout.splitlines() if line.startswith("verdict: ")]
    assert _quoted(verdict), verdict


def test_the_committed_child_spaces_read_back_with_their_lineage(cli):
    code, stdout, err = cli("space", "show", ROOT / "bench" / "data" / "refine_real_r2.yaml")
    assert code == 0 and err == ""
    (step1,) = [line for line in stdout.splitlines() if "+ drop stage1.depth=1:" in line]
    assert step1.endswith("(applied by --apply; the rule rejected it)")  # A -> B: chosen against the rule
    (step2,) = [line for line in stdout.splitlines() if "+ narrow stage1.se_ratio to [null]:" in line]
    assert "applied by --apply" not in step2  # B -> C: accepted by the rule
    assert stdout.count("lineage:") == 2  # A -> B -> C
