"""KRR predictions, loss, ridge and accuracy against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kipd import distill
from kipd.distill._krr import krr_platt_loss_features  # not (yet) a public name


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
    # Both routes (row space rotated first where p > n_s, direct where p <= n_s) against
    # krr_predict of K = Phi Phi^T, in float64 (observed below 1e-9).
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        phi_s = rng.standard_normal((support, features))
        phi_t = rng.standard_normal((30, features))
        y_s, y_t = _targets(np.arange(support) % 3, 3), _targets(np.arange(30) % 3, 3)
        loss, predictions = distill.krr_loss_features(phi_t, phi_s, y_s, y_t, 1e-3)
        expected = distill.krr_predict(phi_t @ phi_s.T, phi_s @ phi_s.T, y_s, 1e-3)
        np.testing.assert_allclose(predictions, expected, rtol=1e-9, atol=1e-9)
        assert float(loss) == pytest.approx(0.5 * np.mean((y_t - np.asarray(expected)) ** 2))


@pytest.mark.parametrize("features", [60, 64, 72])
def test_feature_predictions_stay_accurate_in_float32_at_the_interpolation_threshold(features):
    """p near n_s, features with a large common part (like a ConvNet's ReLU features):
    the Gram's smallest eigenvalues are ~1e-9 of its largest, below float32's rounding of
    it; the predictions must still match float64."""
    rng = np.random.default_rng(4)
    support = 64
    common = rng.standard_normal(features)
    phi_s = 3 * common + 0.05 * rng.standard_normal((support, features))
    phi_t = 3 * common + 0.05 * rng.standard_normal((40, features))
    y_s = _targets(np.arange(support) % 4, 4)
    predictions = np.asarray(
        distill.krr_predict_features(phi_t.astype(np.float32), phi_s.astype(np.float32), y_s)
    )
    lam = 1e-6 * np.sum(phi_s**2) / support
    expected = phi_t @ phi_s.T @ np.linalg.solve(phi_s @ phi_s.T + lam * np.eye(support), y_s)
    assert np.all(np.isfinite(predictions))
    error = np.linalg.norm(predictions - expected) / np.linalg.norm(expected)
    assert error < 1e-3  # observed 1.2e-5; a float32 Cholesky of the Gram: 0.09 to 0.76


def _platt_problem(seed=5, support=6, targets=20, features=9, classes=3):
    rng = np.random.default_rng(seed)
    phi_s = rng.standard_normal((support, features))
    phi_t = rng.standard_normal((targets, features))
    y_s = _targets(np.arange(support) % classes, classes).astype(np.float64)
    y_t = _targets(rng.integers(0, classes, targets), classes).astype(np.float64)
    return phi_t, phi_s, y_s, y_t


def test_platt_loss_is_the_cross_entropy_of_scaled_predictions():
    # RFAD's loss: CrossEntropyLoss(exp(k) * preds, argmax(y_t)), the mean over targets.
    with jax.enable_x64(True):
        phi_t, phi_s, y_s, y_t = _platt_problem()
        log_scale = 0.7
        loss, predictions = krr_platt_loss_features(phi_t, phi_s, y_s, y_t, log_scale, 1e-3)
        expected = _numpy_predict(phi_t @ phi_s.T, phi_s @ phi_s.T, y_s, 1e-3)
        np.testing.assert_allclose(predictions, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(
            predictions, distill.krr_loss_features(phi_t, phi_s, y_s, y_t, 1e-3)[1]
        )
        logits = np.exp(log_scale) * expected
        classes = np.argmax(y_t, axis=1)
        log_norm = np.log(np.sum(np.exp(logits), axis=1))
        hand = np.mean(log_norm - logits[np.arange(len(classes)), classes])
        assert float(loss) == pytest.approx(hand, rel=1e-12)


def test_platt_loss_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        phi_t, phi_s, y_s, y_t = _platt_problem(seed=6)

        def loss(features_s, labels, log_scale):
            return krr_platt_loss_features(phi_t, features_s, labels, y_t, log_scale, 1e-3)[0]

        point = (jnp.asarray(phi_s), jnp.asarray(y_s), jnp.asarray(-0.3))
        grads = jax.grad(loss, argnums=(0, 1, 2))(*point)
        rng = np.random.default_rng(7)
        eps = 1e-5
        for i, grad in enumerate(grads):
            direction = rng.standard_normal(np.shape(point[i]))
            plus = [p + eps * direction if j == i else p for j, p in enumerate(point)]
            minus = [p - eps * direction if j == i else p for j, p in enumerate(point)]
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert float(jnp.vdot(grad, direction)) == pytest.approx(float(numeric), rel=1e-7)
