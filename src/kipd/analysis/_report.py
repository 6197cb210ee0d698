"""``kipd report``: one self-contained HTML page about a run.

The page embeds every figure as a base64 PNG and needs nothing else (no script, no
external file), so it can be mailed or archived with the run. It holds the run's
summary and config, the image grid, the labels, the training curves, and the dimension,
spectral-band and subsampling analyses with their tables and plots.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import kipd
from kipd import compute, files, runs
from kipd.analysis import _figures, _tables
from kipd.analysis._errors import AnalysisError, require_matplotlib
from kipd.analysis._krr import krr_test_accuracy
from kipd.analysis._registry import ANALYSES, RunContext

# A figure's drawing and PNG encoding (matplotlib's Agg renderer, one core), measured on
# this project's 2-core CPU: ~0.3 s per figure and ~0.01 s per image of the grid (at most
# 5 per class of 10 classes, initial and learned: 100 images, ~1.3 s). On a 12-image run
# the report's six figures took 2 s of its 4 s, the KRR solves of the subsampling most of
# the rest, and its kernels a few milliseconds.
_FIGURE_SECONDS = 0.3
_GRID_IMAGE_SECONDS = 0.01

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f3f8; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
.note, .meta { color: #555; font-size: 0.9em; }
.row { display: flex; gap: 2em; align-items: flex-start; } details { margin: 0.8em 0; }
"""


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _krr_seconds(test: int, n: int, classes: int, lambda0: float) -> tuple[float, float]:
    """Seconds of a KRR solve of ``n`` support images on ``test`` test images, timed here
    on those shapes: the first (JAX compiles it for the shapes) and then the fastest of
    three more (a solve alone; the machine's other work only slows it)."""
    k_ss = np.eye(n, dtype=np.float32)
    k_ts = np.zeros((test, n), np.float32)
    labels = np.zeros((n, classes), np.float32)
    test_labels = np.zeros(test, np.int32)
    times = []
    for _ in range(4):
        started = time.perf_counter()
        krr_test_accuracy(k_ts, k_ss, labels, test_labels, lambda0)
        times.append(time.perf_counter() - started)
    return times[0], min(times[1:])


def _estimate(
    context: RunContext,
    executor: compute.Executor | None,
    log: Callable[[str], None] | None,
    options: dict[str, Any],
) -> compute.Estimate:
    """The report's cost: its kernel entries (the test kernels of the final and initial
    supports, one ``K_ss`` per kept checkpoint for the dimensions), the subsampling's KRR
    solves (one timed here: each new subset size compiles, every solve runs) and the
    figures (:data:`_FIGURE_SECONDS` each, and :data:`_GRID_IMAGE_SECONDS` per image of
    the grid)."""
    run = context.run
    resolved = runs.resolve(run, data_dir=context.data_dir, kernel=context.kernel)
    test = len(resolved.test_indices) if context.test_size is None else context.test_size
    test = min(test, len(resolved.dataset.y_test))
    n = len(run.images)
    checkpoints = len(runs.checkpoint_supports(run))
    settings = {**ANALYSES["subsample"].defaults(), **options}
    sizes = 1 + len(settings["fractions"])  # the whole support, then each fraction's size
    solves = 2 * (1 + len(settings["fractions"]) * settings["draws"])  # learned and natural
    first, again = _krr_seconds(test, n, run.labels.shape[1], resolved.lambda0)
    figures = 2 + len(ANALYSES) + any("loss" in r for r in run.metrics)
    shown = 2 * sum(min(5, int(np.sum(run.classes == c))) for c in np.unique(run.classes)[:10])
    kernels = compute.kernel_estimate(
        f"report of {n} support images: test kernels on {test} test images, dimensions at "
        f"{checkpoints} checkpoints ({context.kernel}), {solves:,} KRR solves of the "
        f"subsampling, {figures} figures",
        compute.KernelSpec(context.kernel),
        resolved.dataset.image_shape,
        n,
        {"test kernels": 2 * (test + n) * n, "dimensions": checkpoints * n * n},
        workers=1 if executor is None else executor.workers_alive,
        log=log,
    )
    return kernels._replace(
        parts={
            **kernels.parts,
            "subsampling": sizes * max(0.0, first - again) + solves * again,
            "figures": figures * _FIGURE_SECONDS + shown * _GRID_IMAGE_SECONDS,
        }
    )


def _page(run: runs.Run, figures: dict[str, bytes], outcomes: dict[str, Any]) -> str:
    """The report's HTML: summary and config, images, labels, curves, one section per
    analysis."""
    state = "finished" if run.finished else f"unfinished: latest checkpoint, step {run.step}"
    summary = run.summary or {"state": state}
    parts = [
        f"<h1>kipd report: {html.escape(str(run.path))}</h1>",
        (
            f'<p class="meta">{html.escape(run.config.ALGORITHM)} run, {state}; written '
            f"{datetime.datetime.now().isoformat(timespec='seconds')} by kipd "
            f"{kipd.__version__}</p>"
        ),
        _section(
            "Summary",
            '<div class="row">',
            _tables.to_html(_tables.mapping_table("summary.json", summary)),
            f"<details><summary>{runs.CONFIG_FILE}</summary>",
            _tables.to_html(_tables.mapping_table(runs.CONFIG_FILE, run.config.to_json())),
            "</details></div>",
        ),
        _section(
            "Images",
            _paragraph(
                "Initial (natural) support images and the learned images they became, per "
                "class, in pixel space (preprocessing undone, clipped to [0, 1])."
            ),
            _image(figures["images"], "initial and learned support images"),
        ),
        _section(
            "Labels",
            _paragraph("Support labels: one row per support image, one column per class."),
            _image(figures["labels"], "support labels"),
        ),
    ]
    if "curves" in figures:
        parts.append(_section("Training", _image(figures["curves"], "training curves")))
    parts += [
        _section(
            analysis.title,
            _tables.to_html(analysis.table(outcomes[name].result)),
            _image(outcomes[name].figure(), analysis.title),
        )
        for name, analysis in ANALYSES.items()
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kipd report: {html.escape(run.path.name)}</title><style>{_STYLE}</style>"
        f"</head><body>{''.join(parts)}</body></html>\n"
    )
    return page


def write_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    kernel: str | None = None,
    test_size: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    executor: compute.Executor | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    budget_seconds: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Writes one self-contained HTML report of a run: its summary, config, images, labels,
    training curves and every analysis of :data:`ANALYSES`.

    Args:
      run_dir: a run directory (finished, or a KIP run still training: its latest
        checkpoint is reported).
      out: the HTML file; default ``run_dir/report.html``.
      kernel: architecture of the NTK of the analyses; default: the run's evaluation
        kernel.
      test_size: test images of the band and subsampling analyses; ``None``: the run's
        own final test subset (the images of its ``summary.json``).
      seed: seed of the random draws (and of a ``test_size`` subset).
      data_dir: folder searched first for the dataset; default: the run's.
      executor: where the kernel blocks go (default: this process's devices).
      progress: progress bars.
      log: where status lines go (the ``estimate:`` line); ``None`` measures nothing.
      budget_seconds: stop with :class:`kipd.compute.OverBudgetError` before computing if
        estimated to take longer (``None``: no limit).
      **options: options of the analyses (``bands``, ``fractions``, ``draws``; see
        :data:`ANALYSES`); the rest keep their defaults.

    Returns:
      ``{"analysis": "report", "report": path, <name>: result, ...}`` with each
      analysis's result as ``kipd analyze <name> --json`` gives it.

    Raises:
      AnalysisError: bad options, or matplotlib missing (checked first, before any
        computation). DistillError: not a run directory.

    Example:
      >>> write_report("runs/quickstart")["report"]  # doctest: +SKIP
      'runs/quickstart/report.html'
    """
    require_matplotlib()
    known = {name for analysis in ANALYSES.values() for name in analysis.defaults()}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AnalysisError(f"unknown report options {unknown}; the analyses take {sorted(known)}")
    run = runs.load_run(run_dir)
    out = Path(out) if out is not None else run.path / runs.REPORT_FILE
    context = RunContext(
        run,
        kernel=kernel,
        test_size=test_size,
        seed=seed,
        data_dir=data_dir,
        executor=executor,
        progress=progress,
    )
    if log is not None or budget_seconds is not None:
        estimate = _estimate(context, executor, log, options)
        estimate.announce(log, budget_seconds, "--test-size N, or a cheaper --kernel")
    outcomes = {
        name: analysis.run(
            context, **{key: options[key] for key in analysis.defaults() if key in options}
        )
        for name, analysis in ANALYSES.items()
    }
    figures = _figures.run_figures(run, context.kernels.class_names)

    page = _page(run, figures, outcomes)
    out.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(out, lambda f: f.write(page.encode("utf-8")))
    return {
        "analysis": "report",
        "report": str(out),
        **{name: outcome.result for name, outcome in outcomes.items()},
    }
