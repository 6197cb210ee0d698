"""Analysis: see what KIP learned (paper §4, appendix C).

A run directory is read with ``kipd.runs.load_run``; ``run_figures`` / ``save_figures`` draw
its images
(initial vs learned, in pixel space), labels and training curves; ``dimensions`` and
``dimensions_over_training`` measure the intrinsic (Two-NN) and linear (PCA) dimension of
the images and of their infinite-width NTK gradients (Figs. 7, A3); ``spectral_bands``
splits ridge-0 KRR over bands of K_ss's spectrum (Fig. 8); ``subsampling`` measures how
learned and natural supports degrade when subsampled (Fig. A1); ``natural_baseline``
gives KRR on random natural subsets (Table A1); ``write_report`` puts it all in one HTML
page. ``ANALYSES`` registers the analyses of a run that ``kipd analyze`` and ``kipd report``
iterate; ``ContextOptions`` and ``BaselineOptions`` are the options of the analyses of a
run and of the baseline (the flags of ``kipd analyze`` and ``kipd baseline``). Figures need
matplotlib (``pip install 'kipd[analysis]'``). See docs/analysis.md.
"""

from kipd.analysis._bands import (
    BANDS,
    SpectralBands,
    band_analysis,
    band_predictions,
    spectral_bands,
)
from kipd.analysis._baseline import (
    BASELINE_DRAWS,
    PER_CLASS,
    Baseline,
    BaselineRow,
    natural_baseline,
)
from kipd.analysis._dimension import (
    Dimensions,
    dimensions,
    dimensions_over_training,
    gram_distances,
    linear_dimension,
    two_nn_dimension,
)
from kipd.analysis._errors import AnalysisError, MissingDependencyError
from kipd.analysis._figures import (
    band_plot,
    dimension_plot,
    image_grid,
    label_heatmap,
    run_figures,
    save_figures,
    subsample_plot,
    training_curves,
)
from kipd.analysis._options import BaselineOptions, ContextOptions
from kipd.analysis._registry import ANALYSES, Analysis, Outcome, RunContext
from kipd.analysis._report import write_report
from kipd.analysis._run_kernels import RunKernels, SupportKernels, run_kernels
from kipd.analysis._subsample import DRAWS, FRACTIONS, SubsampleRow, subsampling
from kipd.analysis._tables import Table, baseline_table, to_text

__all__ = [
    "ANALYSES",
    "BANDS",
    "BASELINE_DRAWS",
    "DRAWS",
    "FRACTIONS",
    "PER_CLASS",
    "Analysis",
    "AnalysisError",
    "Baseline",
    "BaselineOptions",
    "BaselineRow",
    "ContextOptions",
    "Dimensions",
    "MissingDependencyError",
    "Outcome",
    "RunContext",
    "RunKernels",
    "SpectralBands",
    "SubsampleRow",
    "SupportKernels",
    "Table",
    "band_analysis",
    "band_plot",
    "band_predictions",
    "baseline_table",
    "dimension_plot",
    "dimensions",
    "dimensions_over_training",
    "gram_distances",
    "image_grid",
    "label_heatmap",
    "linear_dimension",
    "natural_baseline",
    "run_figures",
    "run_kernels",
    "save_figures",
    "spectral_bands",
    "subsample_plot",
    "subsampling",
    "to_text",
    "training_curves",
    "two_nn_dimension",
    "write_report",
]
