"""What ``nas search`` shows while it runs.

On a terminal: a live panel (``rich``) with the counts by outcome, elapsed time, an ETA and the
current Pareto front. Otherwise (a log file, CI, a pipe): one plain line per trained trial, with
the proposals recorded since the line before (infeasible, duplicates). Both read the study, so
trials of other drivers on the same study show up too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from nas.common.units import format_flops, format_params
from nas.study.records import (
    COMPLETE,
    DUPLICATE,
    FAILED,
    INFEASIBLE,
    INTERRUPTED,
    INVALID,
    ORPHANED,
    PRUNED,
    RUNNING,
    TrialRecord,
    noise_neighbours,
)
from nas.study.records import counts as count_outcomes
from nas.study.records import front as pareto_front

# ---- what the searcher tells the progress display ------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A trial was written RUNNING and handed to Ray Tune."""

    number: int
    arch: str | None
    flops: float | None
    kind: str = "started"


@dataclass(frozen=True)
class EpochDone:
    """A running trial reported an epoch."""

    number: int
    epoch: int
    accuracy: float | None
    kind: str = "epoch"


@dataclass(frozen=True)
class Finished:
    """A trained trial was recorded (complete, pruned or failed)."""

    record: TrialRecord
    kind: str = "finished"


@dataclass(frozen=True)
class Skipped:
    """A proposal recorded without training: ``kind`` is infeasible, invalid or duplicate."""

    kind: str
    number: int
    flops: float | None = None
    duplicate_of: int | None = None


@dataclass(frozen=True)
class Exhausted:
    """The searcher stopped proposing: every feasible architecture is trained (``architectures``), or
    the last ``proposals`` were all infeasible or duplicates."""

    architectures: int | None = None
    proposals: int | None = None
    kind: str = "exhausted"


@dataclass(frozen=True)
class Orphaned:
    """A trial a dead driver left running was failed and its architecture queued as ``queued``."""

    number: int
    queued: int
    kind: str = ORPHANED


@dataclass(frozen=True)
class Interrupted:
    """A running trial was stopped by the user and queued to train again."""

    number: int
    kind: str = INTERRUPTED


Event = Started | EpochDone | Finished | Skipped | Exhausted | Orphaned | Interrupted

_REFRESH_S = 0.5
_REREAD_S = 2.0


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_params(n: float | None) -> str:
    return format_params(n)


def fmt_acc(a: float | None) -> str:
    return "-" if a is None else f"{a:.3f}"


def fmt_acc_se(r: TrialRecord) -> str:
    """The accuracy with its standard error (from the validation size), e.g. ``0.546 ±0.016``."""
    se = r.accuracy_se
    return fmt_acc(r.accuracy) + ("" if se is None else f" ±{se:.3f}")


def front_rows(front: Sequence[TrialRecord], objectives: Sequence[str]) -> list[list[str]]:
    """Rows of the front table: trial, each objective (accuracy with its standard error), params (if
    not an objective), the other members whose accuracy is within noise of this one's, architecture."""
    noise = noise_neighbours(front)
    rows = []
    for r in front:
        row = [str(r.number)]
        for o in objectives:
            v = r.objective(o)
            row.append(fmt_acc_se(r) if o == "accuracy" else format_flops(v) if o == "flops" and v is not None
                       else fmt_params(v) if o == "params" else "-" if v is None else f"{v:.2f} ms")
        if "params" not in objectives:
            row.append(fmt_params(r.get("n_params")))
        row.append(", ".join(map(str, noise[r.number])) or "-")
        row.append(r.get("arch") or "")
        rows.append(row)
    return rows


def front_header(objectives: Sequence[str], resolution: int) -> list[str]:
    names = {"accuracy": "accuracy ±se", "flops": f"FLOPs@{resolution}", "params": "params", "latency": "latency"}
    head = ["trial"] + [names[o] for o in objectives]
    if "params" not in objectives:
        head.append("params")
    return head + ["within noise of", "architecture"]


class Progress:
    """Counts, timing and the front, fed by the searcher's events and re-reads of the study."""

    def __init__(self, read: Callable[[], list[TrialRecord]], target: int, concurrency: int,
                 objectives: Sequence[str], resolution: int, out: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.read, self.target, self.concurrency = read, target, concurrency
        self.objectives, self.resolution = tuple(objectives), resolution
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.start = time.monotonic()
        self.records = read()
        self.trained_at_start = sum(r.trained for r in self.records)
        self._durations: list[float] = []
        self._skipped: dict[str, int] = {}
        self._last_read = self._last_draw = 0.0
        self._live_view: Any = None
        self.message: str | None = None

    # ---- feeding ------------------------------------------------------------------------------
    def event(self, ev: Event) -> None:
        if isinstance(ev, Skipped) and ev.kind in (INFEASIBLE, INVALID, DUPLICATE):
            self._skipped[ev.kind] = self._skipped.get(ev.kind, 0) + 1
        elif isinstance(ev, Finished):
            if ev.record.get("wall_time_s"):
                self._durations.append(float(ev.record.get("wall_time_s")))
            self._reread(force=True)
            if not self.live:
                self._line(ev.record)
        elif isinstance(ev, Exhausted):
            self.message = (f"stopped proposing: all {ev.architectures} architectures of the space within the "
                            f"budget are trained" if ev.architectures is not None else
                            f"stopped proposing: the last {ev.proposals} proposals were all infeasible or "
                            f"duplicates (the space may hold no more candidates under this budget)")
            if not self.live:
                print(self.message, file=self.out, flush=True)
        elif isinstance(ev, Orphaned):
            self.note(f"trial {ev.number} was left running by a driver that stopped; its architecture is queued "
                      f"again as trial {ev.queued}")
        elif isinstance(ev, Interrupted) and not self.live:
            print(f"trial {ev.number} interrupted; queued to train again", file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A line for the user while the search runs (above the live panel on a terminal)."""
        if self._live_view is not None:
            self._live_view.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def tick(self) -> None:
        now = time.monotonic()
        self._reread()
        if self.live and now - self._last_draw >= _REFRESH_S:
            self._last_draw = now
            self._draw()

    def _reread(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_read >= _REREAD_S:
            self._last_read = now
            self.records = self.read()

    # ---- numbers ---------------------------------------------------------------------------------
    @property
    def trained(self) -> int:
        return sum(r.trained for r in self.records)

    def eta(self) -> float | None:
        if not self._durations:
            return None
        running = sum(r.outcome == RUNNING for r in self.records)
        left = max(0, self.target - self.trained - running) + running / 2
        return sum(self._durations) / len(self._durations) * left / max(1, self.concurrency)

    def counts_text(self) -> str:
        c = count_outcomes(self.records)
        parts = [f"{k} {c[k]}" for k in (COMPLETE, PRUNED, FAILED, RUNNING, INFEASIBLE, INVALID, DUPLICATE)
                 if c[k] or k in (COMPLETE, RUNNING, INFEASIBLE, DUPLICATE)]
        return "  ".join(parts)

    # ---- plain lines -----------------------------------------------------------------------------
    def _line(self, r: TrialRecord) -> None:
        elapsed = fmt_duration(time.monotonic() - self.start)
        head = f"[{self.trained:>{len(str(self.target))}}/{self.target}] {elapsed:>7}  trial {r.number} {r.outcome}"
        if r.outcome in (COMPLETE, PRUNED):
            flops = r.objective("flops")
            body = (f"  accuracy {fmt_acc(r.accuracy)}  {format_flops(flops) if flops else '-'}  "
                    f"{fmt_params(r.get('n_params'))} params  {fmt_duration(r.get('wall_time_s'))}  {r.get('arch')}")
            if r.outcome == PRUNED:
                body += f"  (stopped after epoch {r.get('epochs')})"
        else:
            body = f": {r.get('reason')}"
        skipped = ", ".join(f"{n} {k}" for k, n in sorted(self._skipped.items()))
        self._skipped = {}
        tail = f"  [+{skipped}]" if skipped else ""
        print(head + body + tail, file=self.out, flush=True)

    # ---- live panel ------------------------------------------------------------------------------
    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = time.monotonic() - self.start
        done = self.trained
        bar_w = 20  # the head line fits an 80-column terminal
        filled = int(bar_w * min(1.0, done / max(1, self.target)))
        head = Text.assemble(
            ("nas search  ", "bold"), ("━" * filled, "green"), ("━" * (bar_w - filled), "grey37"),
            f"  {done}/{self.target} trained   elapsed {fmt_duration(elapsed)}   ETA {fmt_duration(self.eta())}")
        table = Table(title="Pareto front", title_justify="left", box=None, pad_edge=False, header_style="bold")
        header = front_header(self.objectives, self.resolution)
        for i, col in enumerate(header):
            table.add_column(col, justify="right" if 0 < i < len(header) - 1 else "left")
        for row in front_rows(pareto_front(self.records, self.objectives)[:12], self.objectives):
            table.add_row(*row)
        parts: list[Any] = [head, Text(self.counts_text(), style="dim"), table]
        if self.message:
            parts.append(Text(self.message, style="yellow"))
        return Group(*parts)

    def _draw(self) -> None:
        if self._live_view is None:
            from rich.console import Console
            from rich.live import Live

            self._live_view = Live(self._renderable(), console=Console(file=self.out), auto_refresh=False,
                                   transient=False)
            self._live_view.start()
        self._live_view.update(self._renderable(), refresh=True)

    def close(self) -> None:
        self._reread(force=True)  # the summary counts what the study holds now, not the last tick's view
        if self._live_view is not None:
            self._live_view.update(self._renderable(), refresh=True)
            self._live_view.stop()
            self._live_view = None
