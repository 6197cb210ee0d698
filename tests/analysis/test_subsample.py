"""Subsampling (Fig. A1): slicing the shared kernels equals recomputing them; the learned
and natural supports are subsampled at the same indices."""

import numpy as np
import pytest

from kipd import analysis, compute, data, runs
from kipd.analysis._krr import krr_test_accuracy
from kipd.analysis._subsample import subset_accuracies


@pytest.fixture(scope="module")
def run_and_kernels(tiny_run):
    run = runs.load_run(tiny_run)
    return run, analysis.run_kernels(run, progress=False)


def test_sliced_kernels_equal_kernels_of_the_subset(run_and_kernels, tiny_dataset):
    run, kernels = run_and_kernels
    subset = np.array([[0, 3, 5, 6, 10]])
    (sliced,) = subset_accuracies(kernels.final, kernels.test_labels, subset, kernels.lambda0)
    ds = data.load(tiny_dataset)
    spec = compute.KernelSpec("fc1")
    images, labels = run.images[subset[0]], run.labels[subset[0]]
    test_images = run.preprocessing.apply(ds.x_test)
    direct = krr_test_accuracy(
        compute.kernel_matrix(spec, test_images, images),
        compute.kernel_matrix(spec, images),
        labels,
        ds.y_test,
        run.config.lambda0,
    )
    assert sliced == pytest.approx(direct, abs=1e-6)


def test_keeping_everything_gives_the_full_accuracy(run_and_kernels):
    _, kernels = run_and_kernels
    full, (row,) = analysis.subsampling(kernels, fractions=(1.0,), draws=3, progress=False)
    assert row.size == 12
    assert row.final_mean == pytest.approx(full["final"]) and row.final_std == pytest.approx(0)
    assert row.final_drop == pytest.approx(0, abs=1e-12)
    assert row.initial_mean == pytest.approx(full["initial"])


def test_learned_and_natural_use_the_same_indices(run_and_kernels):
    # With the learned support replaced by the natural one, both columns must agree draw
    # for draw, which holds only if both are subsampled at the same indices.
    _, kernels = run_and_kernels
    twins = kernels._replace(final=kernels.initial)
    _, rows = analysis.subsampling(twins, fractions=(0.25, 0.5), draws=10, progress=False)
    for row in rows:
        assert (row.final_mean, row.final_std) == (row.initial_mean, row.initial_std)
    assert [row.size for row in rows] == [3, 6]


def test_bad_options_name_the_problem(run_and_kernels):
    _, kernels = run_and_kernels
    with pytest.raises(analysis.AnalysisError, match="fractions must be in"):
        analysis.subsampling(kernels, fractions=(0.0, 0.5), progress=False)
    with pytest.raises(analysis.AnalysisError, match="draws must be"):
        analysis.subsampling(kernels, draws=0, progress=False)
