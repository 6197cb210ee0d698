"""Analysis: see what KIP learned (paper §4, appendix C).

``load_run`` reads a run directory; ``run_figures`` / ``save_figures`` draw its images
(initial vs learned, in pixel space), labels and training curves; ``dimensions`` and
``dimensions_over_training`` measure the intrinsic (Two-NN) and linear (PCA) dimension of
the images and of their infinite-width NTK gradients (Figs. 7, A3); ``spectral_bands``
splits ridge-0 KRR over bands of K_ss's spectrum (Fig. 8); ``subsampling`` measures how
learned and natural supports degrade when subsampled (Fig. A1); ``natural_baseline``
gives KRR on random natural subsets (Table A1); ``write_report`` puts it all in one HTML
page. Figures need matplotlib (``pip install 'kipd[analysis]'``). See docs/analysis.md.
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
from kipd.analysis._report import write_report
from kipd.analysis._run_kernels import RunKernels
from kipd.analysis._run_kernels import SupportKernels
from kipd.analysis._run_kernels import evaluation_set
from kipd.analysis._run_kernels import run_kernels
from kipd.analysis._runs import Run
from kipd.analysis._runs import checkpoint_supports
from kipd.analysis._runs import load_dataset
from kipd.analysis._runs import load_run
from kipd.analysis._subsample import DRAWS
from kipd.analysis._subsample import FRACTIONS
from kipd.analysis._subsample import SubsampleRow
from kipd.analysis._subsample import subsampling

__all__ = [
    "BANDS",
    "BASELINE_DRAWS",
    "DRAWS",
    "FRACTIONS",
    "PER_CLASS",
    "AnalysisError",
    "Baseline",
    "BaselineRow",
    "Dimensions",
    "MissingDependencyError",
    "Run",
    "RunKernels",
    "SpectralBands",
    "SubsampleRow",
    "SupportKernels",
    "band_analysis",
    "band_plot",
    "band_predictions",
    "checkpoint_supports",
    "dimension_plot",
    "dimensions",
    "dimensions_over_training",
    "evaluation_set",
    "gram_distances",
    "image_grid",
    "label_heatmap",
    "linear_dimension",
    "load_dataset",
    "load_run",
    "natural_baseline",
    "run_figures",
    "run_kernels",
    "save_figures",
    "spectral_bands",
    "subsample_plot",
    "subsampling",
    "training_curves",
    "two_nn_dimension",
    "write_report",
]
