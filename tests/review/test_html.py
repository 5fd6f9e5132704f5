"""The HTML page renders in a real browser (headless Chromium), offline.

Skipped when Chromium is not installed (Debian: ``apt-get install chromium``; CI installs
it). The page must draw every plot: Plotly's SVG roots are counted in the rendered DOM, and
a screenshot must show more than a blank page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.review.conftest import mixed_study
from tuner.review import build_review, write_html

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _chromium() -> str:
    for candidate in (
        os.environ.get("MTTUNE_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip(
        "headless Chromium not found (install Debian's 'chromium' package, or set "
        "MTTUNE_CHROMIUM to the browser's path)"
    )


def _browser(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("html")
    db = folder / "h.db"
    mixed_study(f"sqlite:///{db}", "mixed")
    review = build_review(str(db), "mixed")
    path = write_html(review, folder / "mixed.html")
    figures = path.read_text().count("Plotly.newPlot")
    assert figures == 5
    return path, figures


def test_page_draws_every_plot_in_headless_chromium(page, tmp_path):
    chromium = _chromium()
    path, figures = page
    done = _browser(chromium, tmp_path, "--virtual-time-budget=10000", "--dump-dom", path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count('class="main-svg"') >= figures  # each plot drew its SVG
    assert "mttune review: mixed" in dom


def test_page_screenshot_is_not_blank(page, tmp_path):
    chromium = _chromium()
    pil_image = pytest.importorskip("PIL.Image")
    path, _ = page
    shot = tmp_path / "shot.png"
    done = _browser(
        chromium,
        tmp_path,
        "--virtual-time-budget=10000",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        path.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    img = pil_image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colours = img.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, tables and plots, not blank
    white = max(count for count, rgb in colours if rgb == (255, 255, 255))
    assert white < 0.97 * img.size[0] * img.size[1]
