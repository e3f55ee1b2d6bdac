"""The README's picture of a real lineage: the error EDFs of populations A -> B -> C, drawn by the report's
own EDF figure and photographed by headless Chromium.

    python bench/lineage_picture.py sqlite:///bench/data/refine_real.db docs/lineage_edfs.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.dashboards.figures import build_dashboard  # noqa: E402
from nas.dashboards.studies import open_sources  # noqa: E402

STUDIES = ["pop-A", "pop-A-r", "pop-A-r-r"]


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    url, out = sys.argv[1], Path(sys.argv[2])
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("error: no chromium here (apt-get install chromium)")
    sources, _ = open_sources(url, STUDIES)
    board = build_dashboard([s.read() for s in sources])
    fig = board.figures["edf"]
    title = " -> ".join(STUDIES) + " (resnext-cifar, 15-20 MFLOPs, 1 epoch x 20,000 images): error EDFs"
    fig.update_layout(title=title,
                      width=1200, height=500, margin=dict(t=120), title_y=0.97,
                      legend=dict(orientation="h", x=0, y=1.22, yanchor="bottom"))
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "edf.html"
        fig.write_html(page, include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}/profile",
                        "--window-size=1220,520", "--virtual-time-budget=15000", "--hide-scrollbars",
                        f"--screenshot={out.resolve()}", page.as_uri()], check=True, capture_output=True, timeout=180)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
