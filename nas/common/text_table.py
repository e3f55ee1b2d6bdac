"""Plain-text tables for the terminal: right-aligned numbers, left-aligned text."""

from __future__ import annotations

from collections.abc import Sequence


def _is_number(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "").replace("x", "").strip().isdigit()


def render_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if n and _is_number(c) else c.ljust(w) for c, w in zip(row, widths)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
