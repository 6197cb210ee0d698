"""The HTML report: self-contained, and rendered by headless Chromium with its figures.

The screenshot test needs Chromium at /usr/bin/chromium (Debian's ``chromium`` package;
``.ci/run`` installs it) and is skipped, saying so, where it is absent.
"""

import base64
import io
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from kipd import analysis

CHROMIUM = "/usr/bin/chromium"
GRID_ALT = "initial and learned support images"


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = analysis.write_report(tiny_run, out, draws=5, progress=False)
    assert result["report"] == str(out)
    return out


def test_report_is_one_self_contained_page(report):
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # images, labels, curves, dimension, bands, subsampling: all embedded.
    assert page.count('src="data:image/png;base64,') == 6
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch
    assert "<script" not in page
    for heading in (
        "Summary",
        "Images",
        "Labels",
        "Training",
        "Dimension",
        "Spectral bands",
        "Subsampling",
    ):
        assert f"<h2>{heading}" in page
    assert "intrinsic (Two-NN)" in page and "config.json" in page


def test_report_defaults_to_the_run_directory(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    result = analysis.write_report(copy, draws=2, progress=False)
    assert result["report"] == str(copy / "report.html") and (copy / "report.html").is_file()


def test_report_estimate_covers_its_figures_and_solves(tiny_run, tmp_path):
    """On a small run the kernels cost milliseconds; the figures and the subsampling's KRR
    solves are the report's time, and the estimate says so."""
    lines = []
    started = time.perf_counter()
    analysis.write_report(tiny_run, tmp_path / "r.html", draws=20, progress=False, log=lines.append)
    took = time.perf_counter() - started
    (line,) = [line for line in lines if line.startswith("estimate:")]
    assert "162 KRR solves of the subsampling, 6 figures" in line
    parts = dict(re.findall(r"(subsampling|figures) ([0-9.]+) s", line))
    assert float(parts["figures"]) >= 6 * 0.3
    estimated = float(re.search(r"about ([0-9.]+) s on this machine", line).group(1))
    assert took / 4 < estimated < 4 * took


def _screenshot(html_path, png_path):
    """Renders ``html_path`` in headless Chromium; returns (the PNG as an array, stderr)."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2400",
            f"--screenshot={png_path}",
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the return code is asserted with Chromium's message
    )
    assert done.returncode == 0, done.stderr
    return np.asarray(Image.open(png_path).convert("RGB"), np.int16), done.stderr


def _with_blank_grid(page):
    """The page with the image grid replaced by a white PNG of the same size."""
    match = re.search(rf'alt="{GRID_ALT}" src="data:image/png;base64,([^"]+)"', page)
    grid = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    buffer = io.BytesIO()
    Image.new("RGB", grid.size, "white").save(buffer, format="PNG")
    blank = base64.b64encode(buffer.getvalue()).decode()
    return page.replace(match.group(1), blank)


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"no {CHROMIUM}: install Debian's chromium package (apt-get install -y chromium)",
)
def test_report_renders_in_headless_chromium_with_the_image_grid(report, tmp_path):
    shot, stderr = _screenshot(report, tmp_path / "report.png")
    assert "Uncaught" not in stderr
    assert shot.shape == (2400, 1280, 3)
    assert shot.std() > 20  # not blank
    assert (shot.sum(axis=2) < 300).mean() > 0.01  # dark pixels: images and text
    # The same page with a white grid of the same size: the layout is identical, so the
    # pixels that differ are exactly those the grid's images painted.
    blank = tmp_path / "blank.html"
    blank.write_text(_with_blank_grid(report.read_text()))
    blank_shot, _ = _screenshot(blank, tmp_path / "blank.png")
    differs = np.any(shot != blank_shot, axis=2)
    assert differs.mean() > 0.02
    rows = np.flatnonzero(differs.any(axis=1))
    assert rows.max() - rows.min() < 1000  # one region: the grid, not the whole page
