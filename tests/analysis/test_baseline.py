"""Natural baselines (Table A1): nested class-balanced draws, the pool, and accuracies
equal to KRR on kernels computed from scratch for each subset."""

import numpy as np
import pytest

from kipd import analysis, compute, data
from kipd.analysis._krr import krr_test_accuracy


def _direct_accuracy(ds, subset):
    """KRR test accuracy of train images ``subset`` with kernels computed for them alone."""
    prep = data.fit_preprocessing(ds.x_train, "standard")
    spec = compute.KernelSpec("fc1")
    images = prep.apply(ds.x_train[subset])
    labels = data.centered_one_hot(ds.y_train[subset], ds.num_classes)
    return krr_test_accuracy(
        compute.kernel_matrix(spec, prep.apply(ds.x_test), images),
        compute.kernel_matrix(spec, images),
        labels,
        ds.y_test,
        1e-6,
    )


@pytest.mark.parametrize("pool", [None, 4])  # per-draw K_ss / one K_ss of all drawn images
def test_accuracies_equal_krr_on_each_subset(tiny_dataset, pool):
    ds = data.load(tiny_dataset)
    result = analysis.natural_baseline(
        tiny_dataset, "fc1", (1, 2), draws=4, pool_per_class=pool, seed=3, progress=False
    )
    assert [row.per_class for row in result.rows] == [1, 2]
    assert result.subsets.shape == (4, 3, 2) and result.test_size == 30
    for row in result.rows:
        for draw in (0, 3):
            subset = result.subsets[draw, :, : row.per_class].ravel()
            assert row.accuracies[draw] == pytest.approx(_direct_accuracy(ds, subset), abs=1e-6)
        assert row.mean == pytest.approx(np.mean(row.accuracies))
        assert row.std == pytest.approx(np.std(row.accuracies))


def test_draws_are_nested_class_balanced_and_from_the_pool(tiny_dataset):
    ds = data.load(tiny_dataset)
    result = analysis.natural_baseline(
        tiny_dataset, "fc1", (1, 3), draws=6, pool_per_class=5, seed=0, progress=False
    )
    classes = ds.y_train[result.subsets]  # (draws, C, 3)
    assert np.all(classes == np.arange(3)[None, :, None])  # row c holds class c
    assert all(len(set(draw.ravel())) == 9 for draw in result.subsets)  # no repeats
    assert len(np.unique(result.subsets)) == result.distinct_images <= 15  # pool: 5 per class
    assert len({tuple(draw.ravel()) for draw in result.subsets}) > 1  # draws differ
    again = analysis.natural_baseline(
        tiny_dataset, "fc1", (1, 3), draws=6, pool_per_class=5, seed=0, progress=False
    )
    np.testing.assert_array_equal(again.subsets, result.subsets)  # seeded
    assert again.to_dict()["rows"] == result.to_dict()["rows"]
    assert "subsets" not in result.to_dict()


def test_test_subset_follows_the_one_policy(tiny_dataset):
    result = analysis.natural_baseline(
        tiny_dataset, "fc1", (1,), draws=2, test_size=20, progress=False
    )
    assert result.test_size == 20  # kipd.data.draw_test_subset(30, 20, seed=0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"per_class": (0, 2)}, "integers >= 1"),
        ({"draws": 0}, "draws must be >= 1"),
        ({"per_class": (1, 8), "pool_per_class": 4}, "--pool-per-class 8"),
        ({"per_class": (31,)}, "fewer than per_class=31"),
        ({"test_size": 0}, "--test-size"),
    ],
)
def test_bad_options_name_the_fix(tiny_dataset, options, message):
    options = {"per_class": (1,), "draws": 1, **options}
    with pytest.raises(analysis.AnalysisError, match=message):
        analysis.natural_baseline(tiny_dataset, "fc1", progress=False, **options)


def test_an_over_budget_baseline_stops_before_its_test_kernel(tiny_dataset, monkeypatch):
    """The estimate prices the test kernel, so it comes first: over the budget, no kernel
    matrix is computed and the error names the fix."""
    computed = []
    monkeypatch.setattr(
        compute, "kernel_matrix", lambda *args, **kwargs: computed.append(args) or None
    )
    lines = []
    with pytest.raises(compute.OverBudgetError, match="--test-size N, fewer --draws"):
        analysis.natural_baseline(
            tiny_dataset,
            "fc1",
            (1,),
            draws=2,
            progress=False,
            log=lines.append,
            budget_seconds=1e-9,
        )
    assert computed == []
    # A "timing the fc1 kernel" line may come first: where this machine's timing of the
    # kernel is not cached yet (a new kipd version, a fresh machine).
    estimates = [line for line in lines if line.startswith("estimate:")]
    assert estimates[0].startswith("estimate: baseline of 2 draws x [1] per class (fc1)")
