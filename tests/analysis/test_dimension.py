"""Two-NN and linear dimension against constructed data with known answers; the gradient
dimensions through the NTK (eqs. 4-6); dimensions over a run's checkpoints."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

import kipd.kernels
from kipd import analysis, runs


def _subspace_points(n, dim, ambient, seed):
    """n standard Gaussian points of a random dim-dimensional linear subspace of R^ambient."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, dim)))
    return rng.standard_normal((n, dim)) @ basis.T


def test_gram_distances_are_euclidean_distances():
    x = np.random.default_rng(0).standard_normal((30, 7))
    np.testing.assert_allclose(analysis.gram_distances(x @ x.T), squareform(pdist(x)), atol=1e-12)


def test_two_nn_recovers_a_5_dimensional_subspace_in_100_dimensions():
    # Over 30 seeds this estimate (1000 points) has mean 5.02 and standard deviation 0.21;
    # the tolerance is 3.5 of those.
    x = _subspace_points(1000, 5, 100, seed=0)
    estimate = analysis.two_nn_dimension(analysis.gram_distances(x @ x.T))
    assert estimate == pytest.approx(5.0, abs=0.75)


def test_two_nn_tells_dimensions_apart():
    estimates = [
        analysis.two_nn_dimension(analysis.gram_distances(x @ x.T))
        for x in (_subspace_points(1000, d, 100, seed=1) for d in (2, 5, 10))
    ]
    assert estimates[0] < estimates[1] < estimates[2]
    assert estimates[0] == pytest.approx(2.0, abs=0.4)


def test_two_nn_drops_duplicates_and_needs_three_points():
    x = _subspace_points(200, 3, 10, seed=2)
    with_duplicates = np.concatenate([x, x[:5]])
    estimate = analysis.two_nn_dimension(
        analysis.gram_distances(with_duplicates @ with_duplicates.T)
    )
    assert np.isfinite(estimate) and estimate > 1
    with pytest.raises(analysis.AnalysisError, match="at least 3 points"):
        analysis.two_nn_dimension(np.array([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(analysis.AnalysisError, match="square"):
        analysis.two_nn_dimension(np.zeros((3, 4)))


def _points_with_pca_variances(variances, n=40, ambient=20, seed=3):
    """n points in R^ambient whose centred covariance eigenvalues are exactly ``variances``
    (times n): an offset plus U diag(sqrt(v)) V^T with U's columns orthonormal and centred."""
    rng = np.random.default_rng(seed)
    k = len(variances)
    centred = rng.standard_normal((n, k))
    centred -= centred.mean(axis=0)
    u, _ = np.linalg.qr(centred)
    v, _ = np.linalg.qr(rng.standard_normal((ambient, k)))
    return 5.0 + (u * np.sqrt(variances)) @ v.T


@pytest.mark.parametrize("variance, expected", [(0.5, 2), (0.9, 3), (0.95, 4), (0.99, 5), (1.0, 5)])
def test_linear_dimension_is_exact_on_constructed_data(variance, expected):
    # Variance shares 40%, 30%, 20%, 6%, 4%: 90% is reached exactly at 3 components.
    x = _points_with_pca_variances([40.0, 30.0, 20.0, 6.0, 4.0])
    assert analysis.linear_dimension(x @ x.T, variance) == expected
    # The same from PCA of the centred data directly.
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    assert np.searchsorted(np.cumsum(s) / s.sum(), variance - 1e-12) + 1 == expected


def test_linear_dimension_of_identical_points_is_an_error():
    with pytest.raises(analysis.AnalysisError, match="no variance"):
        analysis.linear_dimension(np.ones((4, 4)))


def test_gradient_dimensions_equal_image_dimensions_for_the_linear_kernel():
    # A linear model f(x) = <theta, x> has gradients g(x) = x, so its NTK is x1 . x2 and
    # the gradient dimensions (eqs. 4-6) must equal the image dimensions.
    def linear_ntk(x1, x2):
        return x1.reshape(len(x1), -1) @ x2.reshape(len(x2), -1).T

    images = _subspace_points(60, 4, 16, seed=4).reshape(60, 4, 4, 1).astype(np.float32)
    dims = analysis.dimensions(images, linear_ntk)
    assert dims.gradient_linear == dims.linear
    assert dims.gradient_intrinsic == pytest.approx(dims.intrinsic, rel=1e-3)  # float32 kernel


def test_ntk_distances_follow_eq_6():
    ntk = functools.partial(kipd.kernels.make("fc1"), get="ntk")
    x = np.random.default_rng(5).standard_normal((3, 4, 4, 1)).astype(np.float32)
    theta = np.asarray(ntk(jnp.asarray(x), jnp.asarray(x)), np.float64)
    distances = analysis.gram_distances(theta)
    expected = np.sqrt(theta[0, 0] + theta[1, 1] - 2 * theta[0, 1])
    assert distances[0, 1] == pytest.approx(expected, rel=1e-12)


def test_dimensions_over_training_reads_every_kept_checkpoint(tiny_run):
    run = runs.load_run(tiny_run)
    dims = analysis.dimensions_over_training(run, progress=False)
    assert list(dims) == [0, 2, 4, 6]
    assert dims[0] == analysis.dimensions(run.init_images, "fc1")
    assert dims[6] == analysis.dimensions(run.images, "fc1")
    assert all(1 <= d.linear <= 12 and 1 <= d.gradient_linear <= 12 for d in dims.values())
