"""The search's progress: what it says at the end is what the study holds at the end."""

import io

from nas.search.progress import Finished, Progress, Skipped
from nas.study.records import TrialRecord


def _record(number: int, outcome: str) -> TrialRecord:
    state = {"infeasible": "PRUNED", "complete": "COMPLETE"}[outcome]
    return TrialRecord(number=number, state=state, outcome=outcome, values=None, params={},
                       feasible=outcome != "infeasible")


def test_final_counts_include_proposals_recorded_since_the_last_refresh():
    """A search that only ever met infeasible proposals once ended with "infeasible 0" while its
    study held 300 of them: the summary used the view of the last periodic refresh."""
    study: list[TrialRecord] = []
    progress = Progress(lambda: list(study), target=5, concurrency=2, objectives=("accuracy", "flops"),
                        resolution=32, out=io.StringIO(), live=False)
    study += [_record(i, "infeasible") for i in range(300)] + [_record(300, "complete")]
    progress.close()
    text = progress.counts_text()
    assert "infeasible 300" in text and "complete 1" in text, text


def _trained(number: int, accuracy: float, flops: float, arch: str) -> TrialRecord:
    return TrialRecord(number=number, state="COMPLETE", outcome="complete", values=(accuracy, flops), params={},
                       feasible=True, attrs={"accuracy": accuracy, "flops": flops, "n_params": 1e6, "arch": arch,
                                             "wall_time_s": 60.0})


def test_live_panel_shows_counts_timing_and_the_current_front():
    """On a terminal: a bar of trained/target, elapsed and ETA, the counts, and the front as a table
    (a dominated trial is not on it), redrawn as trials land."""
    out = io.StringIO()
    study = [_record(0, "infeasible")]
    progress = Progress(lambda: list(study), target=5, concurrency=2, objectives=("accuracy", "flops"),
                        resolution=224, out=out, live=True)
    for number, acc, flops, arch in ((1, 0.6, 2e9, "d2-2-2-2 FRONT-A"), (2, 0.4, 3e9, "d1-1-1-1 DOMINATED"),
                                     (3, 0.5, 1e9, "d3-3-3-3 FRONT-B")):
        record = _trained(number, acc, flops, arch)
        study.append(record)
        progress.event(Finished(record))
        progress._last_draw = 0.0  # redraw at once (the panel refreshes at most every _REFRESH_S)
        progress.tick()
    progress.close()
    text = out.getvalue()
    last = text[text.rindex("nas search"):]
    assert "3/5 trained" in last and "elapsed" in last and "ETA 1:" in last, last
    assert "complete 3" in last and "infeasible 1" in last
    assert "Pareto front" in last and "FRONT-A" in last and "FRONT-B" in last and "DOMINATED" not in last
    assert "0.600" in last and "2 GFLOPs" in last


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    study: list[TrialRecord] = []
    progress = Progress(lambda: list(study), target=2, concurrency=1, objectives=("accuracy", "flops"),
                        resolution=224, out=out, live=False)
    record = _trained(0, 0.55, 1.5e9, "d2-2-2-2 w64")
    study.append(record)
    progress.event(Skipped("infeasible", 1))
    progress.event(Finished(record))
    line = out.getvalue().strip()
    assert line.startswith("[1/2]") and "trial 0 complete" in line and "accuracy 0.550" in line
    assert "1.5 GFLOPs" in line and "d2-2-2-2 w64" in line and line.endswith("[+1 infeasible]")
    assert "\x1b[" not in out.getvalue()  # no terminal codes in a log
