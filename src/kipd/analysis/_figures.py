"""Figures as PNG bytes: images, labels, training curves, and the analyses' plots.

matplotlib is imported only here and only when a figure is drawn, so the rest of kipd
does not need it. Figures are drawn on ``matplotlib.figure.Figure`` objects and saved with
the Agg renderer, never through ``pyplot``: nothing changes a notebook's backend or
global state.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kipd import files, runs
from kipd.analysis._bands import SpectralBands
from kipd.analysis._dimension import Dimensions
from kipd.analysis._errors import AnalysisError, require_matplotlib
from kipd.analysis._subsample import SubsampleRow

FINAL_COLOR = "#1f4e99"
INITIAL_COLOR = "#9db8e0"


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _class_name(names: Sequence[str] | None, c: int) -> str:
    return str(c) if names is None else names[c]


def _show_image(ax: Any, pixels: np.ndarray) -> None:
    """Draws one ``(H, W, C)`` image clipped to [0, 1], without ticks."""
    pixels = np.clip(pixels, 0.0, 1.0)
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(
    initial_pixels: np.ndarray,
    final_pixels: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    max_per_class: int = 5,
    max_classes: int = 10,
) -> bytes:
    """A grid of initial vs learned support images per class, in pixel space.

    One column per class; the top rows are the initial images, the rows below the learned
    images they became (same order). Pixels are clipped to [0, 1] for display.

    Args:
      initial_pixels: ``(n, H, W, C)`` initial images in pixel units
        (``preprocessing.invert`` of the preprocessed ones).
      final_pixels: ``(n, H, W, C)`` learned images in pixel units.
      classes: ``(n,)`` class of each support image.
      class_names: names of the classes (column titles); default: their ids.
      max_per_class: images shown per class (the first ones).
      max_classes: classes shown (the first ones); a CIFAR-100 grid stays readable.

    Returns:
      The PNG file content.

    Paper: Figs. 5, 6 and A2.
    """
    classes = np.asarray(classes)
    shown = [c for c in np.unique(classes)][:max_classes]
    members = [np.flatnonzero(classes == c)[:max_per_class] for c in shown]
    rows = max(len(m) for m in members)
    cell = 1.0 if len(shown) <= 10 else 0.7
    figure = _figure(cell * len(shown) + 0.6, cell * 2 * rows + 0.5)
    axes = np.atleast_2d(figure.subplots(2 * rows, len(shown), squeeze=False))
    for column, (c, indices) in enumerate(zip(shown, members)):
        axes[0, column].set_title(_class_name(class_names, int(c)), fontsize=9)
        for row in range(rows):
            for offset, pixels in ((0, initial_pixels), (rows, final_pixels)):
                ax = axes[offset + row, column]
                if row < len(indices):
                    _show_image(ax, np.asarray(pixels[indices[row]]))
                else:
                    ax.set_axis_off()
    for offset, name in ((0, "initial"), (rows, "learned")):
        axes[offset, 0].set_ylabel(name, fontsize=10)
    return _png(figure)


def label_heatmap(
    labels: np.ndarray, classes: np.ndarray, class_names: Sequence[str] | None = None
) -> bytes:
    """A heatmap of support labels: one row per support image, one column per class.

    Args:
      labels: ``(n, C)`` labels (learned, solved or centred one-hot).
      classes: ``(n,)`` class each support image started as (row names).
      class_names: names of the classes; default: their ids.

    Returns:
      The PNG file content; a diverging colour map centred at 0.

    Paper: Fig. 6.
    """
    labels = np.asarray(labels, np.float64)
    n, num_classes = labels.shape
    scale = float(np.max(np.abs(labels))) or 1.0
    figure = _figure(1.5 + 0.5 * num_classes, 1.2 + min(12.0, 0.25 * n))
    ax = figure.subplots()
    image = ax.imshow(labels, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
    names = [_class_name(class_names, c) for c in range(num_classes)]
    ax.set_xticks(range(num_classes), names, rotation=60, ha="right", fontsize=8)
    if n <= 50:
        ax.set_yticks(range(n), [names[int(c)] for c in classes], fontsize=7)
    ax.set_xlabel("label entry (class)")
    ax.set_ylabel("support image (initial class)")
    figure.colorbar(image, ax=ax, shrink=0.8)
    return _png(figure)


def training_curves(
    metrics: Sequence[Mapping[str, Any]], step_kernel_entries: int | None = None
) -> bytes:
    """KIP training curves: loss, train accuracy (on each step's target batch), test
    accuracy (on the run's fixed test subset), against the step.

    Args:
      metrics: the records of a run's ``metrics.jsonl``.
      step_kernel_entries: kernel entries one step spends
        (:meth:`kipd.runs.KipConfig.step_kernel_entries`); given, the test accuracy
        panel also reads against the kernel entries spent (top axis), the cost a reader
        compares runs of different target batch sizes by.

    Returns:
      The PNG file content.

    Raises:
      AnalysisError: no training records (a Label Solve run, or a run before its first step).
    """
    steps = [r["step"] for r in metrics if "loss" in r]
    if not steps:
        raise AnalysisError("no training steps recorded: nothing to plot")
    tested = [(r["step"], r["test_accuracy"]) for r in metrics if "test_accuracy" in r]
    figure = _figure(12, 3.2)
    loss_ax, train_ax, test_ax = figure.subplots(1, 3)
    loss_ax.semilogy(steps, [r["loss"] for r in metrics if "loss" in r], color=FINAL_COLOR)
    loss_ax.set_title("KRR loss (eq. 1) on the target batch")
    train_ax.plot(
        steps, [100 * r["accuracy"] for r in metrics if "loss" in r], color=FINAL_COLOR, lw=0.8
    )
    train_ax.set_title("train accuracy (target batch), %")
    if tested:
        test_ax.plot(*zip(*[(s, 100 * a) for s, a in tested]), "o-", color=FINAL_COLOR)
    test_ax.set_title("test accuracy (fixed subset), %")
    if step_kernel_entries:
        entries_ax = test_ax.secondary_xaxis(
            "top",
            functions=(lambda s: s * step_kernel_entries, lambda e: e / step_kernel_entries),
        )
        entries_ax.set_xlabel("kernel entries spent")
    for ax in (loss_ax, train_ax, test_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _png(figure)


def dimension_plot(dimensions: Mapping[int, Dimensions]) -> bytes:
    """The four dimensions of the support set against the training step (Figs. 7, A3).

    Args:
      dimensions: ``{step: Dimensions}`` from :func:`dimensions_over_training`.

    Returns:
      The PNG file content.
    """
    steps = list(dimensions)
    figure = _figure(12, 3.0)
    titles = {
        "intrinsic": "intrinsic dim. (Two-NN)",
        "linear": "linear dim. (PCA 90%)",
        "gradient_intrinsic": "gradient intrinsic dim.",
        "gradient_linear": "gradient linear dim.",
    }
    for ax, (field, title) in zip(figure.subplots(1, 4), titles.items()):
        ax.plot(steps, [getattr(d, field) for d in dimensions.values()], "o-", color=FINAL_COLOR)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _png(figure)


def band_plot(bands: Mapping[str, SpectralBands]) -> bytes:
    """Test accuracy per spectral band, learned (dark) vs initial (light) images (Fig. 8).

    Args:
      bands: ``{"final": ..., "initial": ...}`` from :func:`band_analysis`.

    Returns:
      The PNG file content: left, the accuracy each band adds to the bands above it;
      right, the accuracy of each band alone.
    """
    final, initial = bands["final"], bands["initial"]
    count = len(final.band_accuracy)
    names = [f"{100 * b // count}-{100 * (b + 1) // count}%" for b in range(count)]
    x = np.arange(count)
    figure = _figure(10, 3.2)
    for ax, field, title in zip(
        figure.subplots(1, 2),
        ("accuracy_change", "band_accuracy"),
        ("accuracy added by the band (points)", "accuracy of the band alone, %"),
    ):
        for shift, result, color, label in (
            (-0.2, final, FINAL_COLOR, "learned"),
            (0.2, initial, INITIAL_COLOR, "initial"),
        ):
            ax.bar(x + shift, 100 * getattr(result, field), 0.4, color=color, label=label)
        ax.set_xticks(x, names)
        ax.set_xlabel("eigenvalue band of K_ss (largest first)")
        ax.set_title(title)
        ax.axhline(0, color="black", lw=0.5)
        ax.legend()
    return _png(figure)


def subsample_plot(rows: Sequence[SubsampleRow]) -> bytes:
    """Subsampling robustness: relative drops of learned vs natural subsets (Fig. A1),
    and the mean test accuracy against the kept fraction.

    Args:
      rows: from :func:`subsampling`.

    Returns:
      The PNG file content.
    """
    figure = _figure(10, 3.6)
    drop_ax, accuracy_ax = figure.subplots(1, 2)
    for row in rows:
        drop_ax.scatter(
            100 * row.initial_drop, 100 * row.final_drop, s=60, label=f"keep {row.fraction:.0%}"
        )
    limit = 100 * max([0.01, *(max(r.initial_drop, r.final_drop) for r in rows)]) * 1.1
    drop_ax.plot([0, limit], [0, limit], "--", color="gray", lw=0.8)
    drop_ax.set_xlabel("relative drop, natural subsets (%)")
    drop_ax.set_ylabel("relative drop, learned subsets (%)")
    drop_ax.legend(fontsize=8)
    fractions = [100 * r.fraction for r in rows]
    for prefix, color, label in (
        ("final", FINAL_COLOR, "learned"),
        ("initial", INITIAL_COLOR, "initial"),
    ):
        accuracy_ax.errorbar(
            fractions,
            [100 * getattr(r, f"{prefix}_mean") for r in rows],
            [100 * getattr(r, f"{prefix}_std") for r in rows],
            fmt="o-",
            color=color,
            label=label,
            capsize=3,
        )
    accuracy_ax.set_xlabel("support kept (%)")
    accuracy_ax.set_ylabel("test accuracy (%)")
    accuracy_ax.legend()
    for ax in (drop_ax, accuracy_ax):
        ax.grid(alpha=0.3)
    return _png(figure)


def run_figures(run: runs.Run, class_names: Sequence[str] | None = None) -> dict[str, bytes]:
    """The figures that need no test kernels: image grid, label heatmap, training curves.

    Args:
      run: from :func:`kipd.runs.load_run`.
      class_names: names of the classes; default: their ids.

    Returns:
      ``{"images": png, "labels": png, "curves": png}``; ``"curves"`` only for a run with
      recorded training steps.
    """
    figures = {
        "images": image_grid(
            np.asarray(run.preprocessing.invert(run.init_images)),
            np.asarray(run.preprocessing.invert(run.images)),
            run.classes,
            class_names,
        ),
        "labels": label_heatmap(run.labels, run.classes, class_names),
    }
    if isinstance(run.config, runs.KipConfig) and any("loss" in r for r in run.metrics):
        figures["curves"] = training_curves(
            run.metrics, run.config.step_kernel_entries(run.labels.shape[1])
        )
    return figures


def _write_bytes(content: bytes, file: Any) -> None:
    file.write(content)


def save_figures(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | None = None,
) -> list[Path]:
    """Writes :func:`run_figures` as PNG files.

    Args:
      run_dir: a run directory.
      out_dir: folder to write ``images.png``, ``labels.png``, ``curves.png`` into
        (created if missing); default: ``run_dir/figures``.
      data_dir: folder searched first for the run's dataset (read for its class names);
        default: the run's.

    Returns:
      The paths written.

    Example:
      >>> save_figures("runs/quickstart")  # doctest: +SKIP
      [PosixPath('runs/quickstart/figures/images.png'), ...]
    """
    require_matplotlib()
    run = runs.load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / runs.FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    class_names = runs.resolve(run, data_dir=data_dir).dataset.class_names
    for name, png in run_figures(run, class_names).items():
        path = out / f"{name}.png"
        files.atomic_write(path, functools.partial(_write_bytes, png))
        paths.append(path)
    return paths
