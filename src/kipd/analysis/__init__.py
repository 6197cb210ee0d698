"""Analysis: see what KIP learned (paper §4, appendix C).

A run directory is read with ``kipd.runs.load_run``; ``run_figures`` / ``save_figures`` draw its images
(initial vs learned, in pixel space), labels and training curves; ``dimensions`` and
``dimensions_over_training`` measure the intrinsic (Two-NN) and linear (PCA) dimension of
the images and of their infinite-width NTK gradients (Figs. 7, A3); ``spectral_bands``
splits ridge-0 KRR over bands of K_ss's spectrum (Fig. 8); ``subsampling`` measures how
learned and natural supports degrade when subsampled (Fig. A1); ``natural_baseline``
gives KRR on random natural subsets (Table A1); ``write_report`` puts it all in one HTML
page. ``ANALYSES`` registers the analyses of a run that ``kipd analyze`` and ``kipd report``
iterate. Figures need matplotlib (``pip install 'kipd[analysis]'``). See docs/analysis.md.
"""

from kipd.analysis._bands import BANDS
from kipd.analysis._bands import SpectralBands
from kipd.analysis._bands import band_analysis
from kipd.analysis._bands import band_predictions
from kipd.analysis._bands import spectral_bands
from kipd.analysis._baseline import BASELINE_DRAWS
from kipd.analysis._baseline import PER_CLASS
from kipd.analysis._baseline import Baseline
from kipd.analysis._baseline import BaselineRow
from kipd.analysis._baseline import natural_baseline
from kipd.analysis._dimension import Dimensions
from kipd.analysis._dimension import dimensions
from kipd.analysis._dimension import dimensions_over_training
from kipd.analysis._dimension import gram_distances
from kipd.analysis._dimension import linear_dimension
from kipd.analysis._dimension import two_nn_dimension
from kipd.analysis._errors import AnalysisError
from kipd.analysis._errors import MissingDependencyError
from kipd.analysis._figures import band_plot
from kipd.analysis._figures import dimension_plot
from kipd.analysis._figures import image_grid
from kipd.analysis._figures import label_heatmap
from kipd.analysis._figures import run_figures
from kipd.analysis._figures import save_figures
from kipd.analysis._figures import subsample_plot
from kipd.analysis._figures import training_curves
from kipd.analysis._registry import ANALYSES
from kipd.analysis._registry import Analysis
from kipd.analysis._registry import Option
from kipd.analysis._registry import Outcome
from kipd.analysis._registry import RunContext
from kipd.analysis._report import write_report
from kipd.analysis._run_kernels import RunKernels
from kipd.analysis._run_kernels import SupportKernels
from kipd.analysis._run_kernels import run_kernels
from kipd.analysis._subsample import DRAWS
from kipd.analysis._subsample import FRACTIONS
from kipd.analysis._subsample import SubsampleRow
from kipd.analysis._subsample import subsampling
from kipd.analysis._tables import Table
from kipd.analysis._tables import baseline_table
from kipd.analysis._tables import to_text

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
    "BaselineRow",
    "Dimensions",
    "MissingDependencyError",
    "Option",
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
