"""The analyses of a run, registered once: ``kipd analyze`` and ``kipd report`` iterate them.

An :class:`Analysis` names itself, the dataclass of its options (``_options``: defaults
and help as fields and ``Attributes:``), how it runs on a :class:`RunContext`, how its
result prints as a table and how it is drawn. Adding an
analysis is one entry of :data:`ANALYSES`: the command line, the report and ``--json``
follow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from kipd import compute, runs
from kipd.analysis import _figures, _tables
from kipd.analysis._bands import BANDS, band_analysis
from kipd.analysis._dimension import dimensions_over_training
from kipd.analysis._options import BandsOptions, DimensionOptions, SubsampleOptions
from kipd.analysis._results import bands_result, dimension_result, subsample_result
from kipd.analysis._run_kernels import RunKernels, run_kernels
from kipd.analysis._subsample import DRAWS, FRACTIONS, subsampling


class RunContext:
    """A run and the choices every analysis of it shares; the test kernels are computed
    once, on first use, for all the analyses that need them.

    Args:
      run: the run (:func:`kipd.runs.load_run`).
      kernel: NTK architecture of the analyses; default: the run's evaluation kernel.
      test_size: test images of the test-set analyses; ``None``: the run's own final
        test subset (the images of its ``summary.json``).
      seed: seed of the random draws (and of a ``test_size`` subset).
      data_dir: folder searched first for the run's dataset; default: the run's.
      executor: where the kernel blocks go (default: this process's devices).
      progress: progress bars.
    """

    def __init__(
        self,
        run: runs.Run,
        *,
        kernel: str | None = None,
        test_size: int | None = None,
        seed: int = 0,
        data_dir: str | None = None,
        executor: compute.Executor | None = None,
        progress: bool = True,
    ):
        self.run = run
        self.kernel = kernel or run.config.eval_kernel
        self.test_size = test_size
        self.seed = seed
        self.data_dir = data_dir
        self.executor = executor
        self.progress = progress

    @functools.cached_property
    def kernels(self) -> RunKernels:
        """``K_ss`` and ``K_ts`` of the final and initial supports (:func:`run_kernels`)."""
        return run_kernels(
            self.run,
            kernel=self.kernel,
            test_size=self.test_size,
            seed=self.seed if self.test_size is not None else None,
            data_dir=self.data_dir,
            executor=self.executor,
            progress=self.progress,
        )


class Outcome(NamedTuple):
    """What an analysis gives: its JSON-ready result and its figure (PNG bytes; drawn on
    request, since it needs matplotlib)."""

    result: dict[str, Any]
    figure: Callable[[], bytes]


class Analysis(NamedTuple):
    """One analysis of a run.

    Attributes:
      name: the ``kipd analyze`` sub-command and the ``"analysis"`` field of its result.
      title: the report's section title.
      help: one line for ``kipd analyze --help``.
      description: a paragraph for ``kipd analyze NAME --help``.
      options: the dataclass of its own options, beyond those of :class:`RunContext`;
        its fields are the keywords of ``run``.
      uses_test_set: whether it reads the test kernels (so ``--test-size`` applies).
      run: ``run(context, **options) -> Outcome``.
      table: ``table(result) -> Table``, the printed and reported table.
    """

    name: str
    title: str
    help: str
    description: str
    options: type
    uses_test_set: bool
    run: Callable[..., Outcome]
    table: Callable[[Mapping[str, Any]], _tables.Table]

    def defaults(self) -> dict[str, Any]:
        """``{option name: default}``."""
        return dataclasses.asdict(self.options())


def _dimension(context: RunContext) -> Outcome:
    dims = dimensions_over_training(
        context.run, kernel=context.kernel, executor=context.executor, progress=context.progress
    )
    return Outcome(
        dimension_result(context.run, dims, context.kernel),
        lambda: _figures.dimension_plot(dims),
    )


def _bands(context: RunContext, *, bands: int = BANDS) -> Outcome:
    spectra = band_analysis(context.kernels, bands)
    return Outcome(
        bands_result(context.run, context.kernels, spectra), lambda: _figures.band_plot(spectra)
    )


def _subsample(
    context: RunContext, *, fractions: tuple[float, ...] = FRACTIONS, draws: int = DRAWS
) -> Outcome:
    full, rows = subsampling(context.kernels, fractions, draws, context.seed, context.progress)
    return Outcome(
        subsample_result(context.run, context.kernels, full, rows, draws),
        lambda: _figures.subsample_plot(rows),
    )


ANALYSES: dict[str, Analysis] = {
    analysis.name: analysis
    for analysis in (
        Analysis(
            name="dimension",
            title="Dimension (Fig. 7, A3)",
            help="intrinsic and linear dimension of images and NTK gradients per checkpoint",
            description="Two-NN intrinsic dimension and PCA linear dimension (90% of variance) "
            "of the support images and of their infinite-width NTK gradients (eqs. 4-6), at "
            "step 0 and every kept checkpoint (Figs. 7, A3).",
            options=DimensionOptions,
            uses_test_set=False,
            run=_dimension,
            table=_tables.dimension_table,
        ),
        Analysis(
            name="bands",
            title="Spectral bands (Fig. 8)",
            help="test accuracy per band of K_ss's spectrum, learned vs initial (Fig. 8)",
            description="Ridge-0 KRR restricted to contiguous bands of the eigenvalues of "
            "K_ss: the test accuracy each band adds, learned vs initial images (Fig. 8).",
            options=BandsOptions,
            uses_test_set=True,
            run=_bands,
            table=_tables.band_table,
        ),
        Analysis(
            name="subsample",
            title="Subsampling (Fig. A1)",
            help="KRR accuracy of random subsets, learned vs initial (Fig. A1)",
            description="KRR test accuracy of random subsets of the learned support and of the "
            "same indices of the natural initial support, and their relative drops (Fig. A1).",
            options=SubsampleOptions,
            uses_test_set=True,
            run=_subsample,
            table=_tables.subsample_table,
        ),
    )
}
"""Every analysis of a run, in the report's order."""
