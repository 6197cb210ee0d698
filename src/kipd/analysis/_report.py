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
from pathlib import Path
from collections.abc import Callable
from typing import Any

import kipd
from kipd import compute, distill, files
from kipd.analysis import _figures, _tables
from kipd.analysis._errors import AnalysisError, require_matplotlib
from kipd.analysis._registry import ANALYSES, RunContext

REPORT_FILE = "report.html"

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


def _estimate(
    context: RunContext, executor: compute.Executor | None, log: Callable[[str], None] | None
) -> compute.Estimate:
    """The report's kernel entries: the test kernels of the final and initial supports,
    and one ``K_ss`` per kept checkpoint for the dimensions."""
    run = context.run
    resolved = distill.resolve(run, data_dir=context.data_dir, kernel=context.kernel)
    test = len(resolved.test_indices) if context.test_size is None else context.test_size
    test = min(test, len(resolved.dataset.y_test))
    n = len(run.images)
    checkpoints = len(distill.checkpoint_supports(run))
    return compute.kernel_estimate(
        f"report of {n} support images: test kernels on {test} test images, dimensions at "
        f"{checkpoints} checkpoints ({context.kernel})",
        compute.KernelSpec(context.kernel),
        resolved.dataset.image_shape,
        n,
        {"test kernels": 2 * (test + n) * n, "dimensions": checkpoints * n * n},
        workers=1 if executor is None else executor.workers_alive,
        log=log,
    )


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
    known = {option.name for analysis in ANALYSES.values() for option in analysis.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AnalysisError(f"unknown report options {unknown}; the analyses take {sorted(known)}")
    run = distill.load_run(run_dir)
    out = Path(out) if out is not None else run.path / REPORT_FILE
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
        estimate = _estimate(context, executor, log)
        estimate.announce(log, budget_seconds, "--test-size N, or a cheaper --kernel")
    outcomes = {
        name: analysis.run(
            context, **{o.name: options[o.name] for o in analysis.options if o.name in options}
        )
        for name, analysis in ANALYSES.items()
    }
    figures = _figures.run_figures(run, context.kernels.class_names)

    state = "finished" if run.finished else f"unfinished: latest checkpoint, step {run.step}"
    summary = run.summary or {"state": state}
    parts = [
        f"<h1>kipd report: {html.escape(str(run.path))}</h1>",
        (
            f'<p class="meta">{html.escape(run.config.ALGORITHM)} run, {state}; written '
            f"{datetime.datetime.now().isoformat(timespec='seconds')} by kipd {kipd.__version__}</p>"
        ),
        _section(
            "Summary",
            '<div class="row">',
            _tables.to_html(_tables.mapping_table("summary.json", summary)),
            "<details><summary>config.json</summary>",
            _tables.to_html(_tables.mapping_table("config.json", run.config.to_json())),
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
    out.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(out, lambda f: f.write(page.encode("utf-8")))
    return {
        "analysis": "report",
        "report": str(out),
        **{name: outcome.result for name, outcome in outcomes.items()},
    }
