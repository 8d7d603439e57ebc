"""The HTML report in a real browser: headless Chromium renders the table and the embedded plots.

Needs Debian's ``chromium`` (``apt-get install -y chromium chromium-driver``);
skipped with that reason when it is absent.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from ntgraph.compare import SIMULATORS, SimulatorSpec, compare

pytest.importorskip("torch", reason="the reference is the torch backend")
pytest.importorskip("matplotlib", reason="the report's figures need matplotlib")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium chromium-driver)"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"  # its own profile: parallel test workers never share one
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.fixture
def report_html(tmp_path, monkeypatch):
    """A report of a subtract-reset network against a simulator that resets to zero (see test_compare.py)."""
    from test_compare import LABELS, X, network  # noqa: PLC0415 - the same networks and fake simulators

    monkeypatch.setitem(SIMULATORS, "broken", SimulatorSpec("broken", "test-reset-losing", "direct", "torch that resets to zero"))
    report = compare(network("subtract"), X, ["torch", "broken"], dt=1e-3, labels=LABELS)
    return report.write(tmp_path / "report", min_agreement=0.99)["html"]


def test_report_renders_with_table_and_plots(report_html, tmp_path):
    url = report_html.resolve().as_uri()
    shot = tmp_path / "shot.png"
    run = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", url)
    assert shot.is_file(), f"chromium wrote no screenshot: {run.stderr[-2000:]}"
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    ink = np.any(pixels < 0.9, axis=-1)             # anything that is not (near) white
    assert ink.mean() > 0.03, "the page is blank"
    # the agreement chart's red bar (below --min-agreement) is on screen: a plot was decoded and drawn
    red = (np.abs(pixels - np.array([214, 39, 40]) / 255).max(axis=-1) < 0.06)
    assert red.sum() > 500, "no plot colours on the page"

    dom = chromium(tmp_path, "--dump-dom", url).stdout
    assert '<table id="results">' in dom and "<td class=\"\">broken</td>" in dom
    assert dom.count('<img alt="') == 3 and dom.count('src="data:image/png;base64,') == 3
    assert "reset mode lost in NIR export" in dom and 'id="gate"' in dom
