"""The search's progress: what it says at the end is what the study holds at the end."""

import io

from nas.progress import Progress
from nas.records import TrialRecord


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
