"""Figures: PNG files of the expected content, and a clear error without matplotlib."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

from kipd import analysis, runs

PNG = b"\x89PNG\r\n\x1a\n"


def test_image_grid_shows_initial_images_above_learned_ones():
    # Black initial images, white learned ones (pixels clipped to [0, 1] for display):
    # 3 class columns, 2 rows of initial images above 2 rows of learned images.
    initial, final = np.full((6, 8, 8, 1), -0.5), np.full((6, 8, 8, 1), 1.5)
    png = analysis.image_grid(initial, final, np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
    assert png.startswith(PNG)
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float64)
    assert gray.shape == (450, 360)  # (4 rows + 0.5) x (3 columns + 0.6) inches at 100 dpi
    top, bottom = gray[: len(gray) // 2], gray[len(gray) // 2 :]
    assert (top < 50).mean() > 0.3 > (bottom < 50).mean()


def test_run_figures_and_saved_files(tiny_run, tmp_path):
    run = runs.load_run(tiny_run)
    figures = analysis.run_figures(run)
    assert set(figures) == {"images", "labels", "curves"}
    assert all(png.startswith(PNG) for png in figures.values())
    paths = analysis.save_figures(tiny_run, tmp_path / "figs")
    assert sorted(p.name for p in paths) == ["curves.png", "images.png", "labels.png"]
    assert all(p.read_bytes().startswith(PNG) for p in paths)


def test_analysis_plots(tiny_run):
    run = runs.load_run(tiny_run)
    kernels = analysis.run_kernels(run, progress=False)
    _, rows = analysis.subsampling(kernels, fractions=(0.5,), draws=2, progress=False)
    dims = analysis.dimensions_over_training(run, progress=False)
    for png in (
        analysis.dimension_plot(dims),
        analysis.band_plot(analysis.band_analysis(kernels)),
        analysis.subsample_plot(rows),
    ):
        assert png.startswith(PNG)


def test_training_curves_read_against_kernel_entries():
    metrics = [{"step": 0, "test_accuracy": 0.5}]
    metrics += [{"step": s, "loss": 1.0 / s, "accuracy": 0.6} for s in (1, 2, 3)]
    metrics += [{"step": 3, "test_accuracy": 0.7}]
    plain = analysis.training_curves(metrics)
    with_entries = analysis.training_curves(metrics, step_kernel_entries=100_200)
    assert with_entries.startswith(PNG) and with_entries != plain  # the top axis is drawn


def test_training_curves_need_training_steps():
    with pytest.raises(analysis.AnalysisError, match="no training steps"):
        analysis.training_curves([{"step": 0, "test_accuracy": 0.5}])


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(analysis.MissingDependencyError, match=r"pip install 'kipd\[analysis\]'"):
        analysis.label_heatmap(np.eye(3), np.arange(3))
