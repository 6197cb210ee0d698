"""Pins kipd.analysis' public names: changing them is a visible decision."""

import kipd.analysis


def test_public_names():
    assert kipd.analysis.__all__ == [
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
    public = {name for name in dir(kipd.analysis) if not name.startswith("_")}
    assert public == set(kipd.analysis.__all__)


def test_errors_are_value_errors_and_missing_dependencies_import_errors():
    assert issubclass(kipd.analysis.AnalysisError, ValueError)
    assert issubclass(kipd.analysis.MissingDependencyError, kipd.analysis.AnalysisError)
    assert issubclass(kipd.analysis.MissingDependencyError, ImportError)
