"""Label Solve against a float64 NumPy pseudo-inverse, and its optimality."""

import jax
import jax.numpy as jnp
import numpy as np

from kipd import compute, distill


def test_label_solve_matches_numpy_pseudo_inverse():
    spec = compute.KernelSpec("convvec1")
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(keys[0], (6, 5, 5, 1))
    xt = jax.random.normal(keys[1], (40, 5, 5, 1))
    y_t = np.eye(3)[np.arange(40) % 3] - 1 / 3
    k_ss = compute.kernel_matrix(spec, xs)
    k_ts = compute.kernel_matrix(spec, xt, xs)
    labels = distill.label_solve(k_ts, k_ss, y_t)

    k_ss64, k_ts64 = k_ss.astype(np.float64), k_ts.astype(np.float64)
    ridge = distill.LAMBDA0 * np.trace(k_ss64) / 6
    a = k_ts64 @ np.linalg.inv(k_ss64 + ridge * np.eye(6))
    expected = np.linalg.pinv(a) @ y_t
    np.testing.assert_allclose(labels, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())

    # The solved labels minimize the loss of eq. (1): no other labels do better.
    def loss(y_s):
        return distill.krr_loss(jnp.asarray(k_ts), jnp.asarray(k_ss), y_s, y_t)[0]

    start = np.eye(3, dtype=np.float32)[np.arange(6) % 3] - 1 / 3
    assert float(loss(labels)) < float(loss(start))
    assert np.abs(jax.grad(loss)(jnp.asarray(labels))).max() < 1e-4


def test_label_solve_gives_least_norm_labels_for_duplicate_support():
    """A duplicated support point makes A rank-deficient; the least-norm solution
    splits the label equally between the copies."""
    k_ss = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    k_ts = np.array([[2.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.5]])
    y_t = np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]])
    labels = distill.label_solve(k_ts, k_ss, y_t)
    np.testing.assert_allclose(labels[0], labels[1], rtol=1e-6)
