"""KRR predictions, loss, ridge and accuracy against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kipd import distill


def _images(seed, n, shape=(6, 6, 1)):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, *shape))


def _targets(labels, num_classes):
    return np.eye(num_classes, dtype=np.float32)[labels] - 1.0 / num_classes


def _numpy_predict(k_ts, k_ss, y_s, lambda0):
    k_ts, k_ss, y_s = (np.asarray(a, np.float64) for a in (k_ts, k_ss, y_s))
    ridge = lambda0 * np.trace(k_ss) / len(k_ss)
    return k_ts @ np.linalg.solve(k_ss + ridge * np.eye(len(k_ss)), y_s)


def test_ridge_is_lambda0_times_mean_diagonal():
    k_ss = jnp.diag(jnp.array([1.0, 2.0, 3.0, 6.0]))
    assert float(distill.ridge(k_ss, 0.5)) == pytest.approx(0.5 * 3.0)


def test_predict_and_loss_match_numpy(ntk):
    kernel = ntk("fc1")
    xs, xt = _images(0, 8), _images(1, 30)
    y_s, y_t = _targets(np.arange(8) % 4, 4), _targets(np.arange(30) % 4, 4)
    k_ss, k_ts = kernel(xs, xs), kernel(xt, xs)
    loss, predictions = distill.krr_loss(k_ts, k_ss, y_s, y_t, 1e-3)
    expected = _numpy_predict(k_ts, k_ss, y_s, 1e-3)
    np.testing.assert_allclose(predictions, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(distill.krr_predict(k_ts, k_ss, y_s, 1e-3), predictions, rtol=1e-6)
    assert float(loss) == pytest.approx(0.5 * np.mean((y_t - expected) ** 2), rel=1e-4)


def test_float32_solve_with_default_ridge_on_singular_support_kernel(ntk):
    """Duplicate support images make K_ss singular; lambda0 = 1e-6 keeps the float32
    Cholesky solve finite and close to the float64 solution (the paper computes in
    float32 with this ridge)."""
    kernel = ntk("convvec2")
    distinct = _images(2, 10)
    xs = jnp.concatenate([distinct, distinct])  # rank 10 of 20
    xt = _images(3, 50)
    y_s = _targets(np.arange(20) % 10, 10)
    k_ss, k_ts = kernel(xs, xs), kernel(xt, xs)
    assert np.linalg.matrix_rank(np.asarray(k_ss, np.float64), tol=1e-6 * np.abs(k_ss).max()) == 10
    predictions = distill.krr_predict(k_ts, k_ss, y_s)
    expected = _numpy_predict(k_ts, k_ss, y_s, distill.LAMBDA0)
    assert np.isfinite(np.asarray(predictions)).all()
    np.testing.assert_allclose(predictions, expected, atol=2e-3 * np.abs(expected).max())


def test_support_set_is_interpolated_with_small_ridge(ntk):
    kernel = ntk("fc1")
    xs = _images(4, 6)
    y_s = _targets(np.arange(6) % 3, 3)
    k_ss = kernel(xs, xs)
    np.testing.assert_allclose(distill.krr_predict(k_ss, k_ss, y_s), y_s, atol=1e-3)


def test_accuracy_counts_argmax_hits():
    predictions = jnp.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert float(distill.accuracy(predictions, jnp.array([0, 1, 1, 1]))) == 0.75


@pytest.mark.parametrize("support, features", [(8, 40), (12, 5)], ids=["n_s<p", "p<n_s"])
def test_feature_predictions_equal_krr_of_the_feature_kernel(support, features):
    # Both systems (n_s x n_s where n_s <= p, p x p where p < n_s) against krr_predict of
    # K = Phi Phi^T, in float64 (where the two routes agree to ~1e-12; observed below 1e-9).
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        phi_s = rng.standard_normal((support, features))
        phi_t = rng.standard_normal((30, features))
        y_s, y_t = _targets(np.arange(support) % 3, 3), _targets(np.arange(30) % 3, 3)
        loss, predictions = distill.krr_loss_features(phi_t, phi_s, y_s, y_t, 1e-3)
        expected = distill.krr_predict(phi_t @ phi_s.T, phi_s @ phi_s.T, y_s, 1e-3)
        np.testing.assert_allclose(predictions, expected, rtol=1e-9, atol=1e-9)
        assert float(loss) == pytest.approx(0.5 * np.mean((y_t - np.asarray(expected)) ** 2))
