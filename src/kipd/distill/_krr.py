"""Kernel ridge regression: predictions, the KIP loss (eq. 1), RFAD's Platt-scaled
cross-entropy (on feature maps) and accuracy.

The ridge is adapted to the scale of the support kernel (paper, appendix A):
``lambda = lambda0 * tr(K_ss) / n_s`` with ``lambda0 = 1e-6``. The linear system is
solved by a Cholesky factorization of the symmetric positive definite
``K_ss + lambda I``, never by forming an inverse. In float32 this ridge bounds the
condition number of the system by about ``n_s / lambda0`` relative to the mean
eigenvalue, which Cholesky handles even when ``K_ss`` itself is singular (duplicate
support images); ``tests/distill/test_krr.py`` checks this against float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Matrix = jax.Array | np.ndarray
"""A kernel matrix or label array: these functions take NumPy arrays as well as JAX ones."""

LAMBDA0 = 1e-6
"""Default relative ridge ``lambda0`` of the paper (appendix A)."""


def ridge(k_ss: Matrix, lambda0: float = LAMBDA0) -> jax.Array:
    """The scale-adapted ridge ``lambda = lambda0 * tr(K_ss) / n_s``.

    Args:
      k_ss: ``(n_s, n_s)`` support-support kernel.
      lambda0: ridge relative to the mean diagonal of ``k_ss``.

    Returns:
      Scalar ``lambda``.
    """
    return lambda0 * jnp.trace(k_ss) / k_ss.shape[0]


def krr_predict(k_ts: Matrix, k_ss: Matrix, y_s: Matrix, lambda0: float = LAMBDA0) -> jax.Array:
    """KRR predictions ``K_ts (K_ss + lambda I)^-1 y_s`` for targets from a support set.

    Args:
      k_ts: ``(n_t, n_s)`` target-support kernel.
      k_ss: ``(n_s, n_s)`` support-support kernel.
      y_s: ``(n_s, C)`` support labels (mean-centred one-hot, or learned).
      lambda0: relative ridge, see :func:`ridge`.

    Returns:
      ``(n_t, C)`` predictions.

    Example:
      >>> k_ss = jnp.eye(2); y_s = jnp.array([[0.5, -0.5], [-0.5, 0.5]])
      >>> krr_predict(k_ss, k_ss, y_s).round(3)
      Array([[ 0.5, -0.5],
             [-0.5,  0.5]], dtype=float32)
    """
    system = k_ss + ridge(k_ss, lambda0) * jnp.eye(k_ss.shape[0], dtype=k_ss.dtype)
    return jnp.asarray(k_ts) @ jax.scipy.linalg.solve(system, y_s, assume_a="pos")


def krr_loss(
    k_ts: Matrix,
    k_ss: Matrix,
    y_s: Matrix,
    y_t: Matrix,
    lambda0: float = LAMBDA0,
) -> tuple[jax.Array, jax.Array]:
    """The KIP loss of eq. (1), averaged: ``0.5 * mean((y_t - K_ts (K_ss + lambda I)^-1 y_s)^2)``.

    The paper writes eq. (1) as half the squared norm; like the paper's reference code
    we take the mean over the ``n_t * C`` entries instead of the sum, so the loss and its
    gradient do not grow with the target batch size and one Adam learning rate serves
    every batch size.

    Args:
      k_ts: ``(n_t, n_s)`` target-support kernel.
      k_ss: ``(n_s, n_s)`` support-support kernel.
      y_s: ``(n_s, C)`` support labels.
      y_t: ``(n_t, C)`` target labels (mean-centred one-hot).
      lambda0: relative ridge, see :func:`ridge`.

    Returns:
      ``(loss, predictions)``: the scalar loss and the ``(n_t, C)`` predictions, so that
      ``jax.value_and_grad(..., has_aux=True)`` gives accuracy without a second solve.
    """
    predictions = krr_predict(k_ts, k_ss, y_s, lambda0)
    return 0.5 * jnp.mean((y_t - predictions) ** 2), predictions


def krr_predict_features(
    features_t: Matrix, features_s: Matrix, y_s: Matrix, lambda0: float = LAMBDA0
) -> jax.Array:
    """KRR predictions of the kernel ``K = Phi Phi^T`` of feature maps, without forming
    ``K_ts`` or ``K_ss``: ``Phi_t w`` with ``w`` the ridge least-squares weights
    ``argmin |Phi_s w - y_s|^2 + lambda |w|^2``, equal to
    ``Phi_t Phi_s^T (Phi_s Phi_s^T + lambda I)^-1 y_s`` (push-through identity).
    ``lambda = lambda0 tr(K_ss) / n_s`` as in :func:`ridge`, with ``tr(K_ss) = |Phi_s|_F^2``.

    Solved by orthogonal factorizations, not by Cholesky of a formed Gram: where the
    number of features ``p`` is near ``n_s`` (the interpolation threshold) the Gram's
    smallest eigenvalues are near 0, and in float32 the rounding of ``Phi_s Phi_s^T``
    outweighs a ridge of ``1e-6``: Cholesky gave NaN for a ConvNet 32:2 map (``p = 577``)
    on 500 Fashion-MNIST images, where this is within 5e-5 of float64. Where ``p > n_s``
    the weights lie in the row space of ``Phi_s``: a QR of ``Phi_s^T`` rotates it onto
    ``n_s`` coordinates first. Then the QR of ``[A; sqrt(lambda) I]`` gives the weights by
    one triangular solve, with the condition number of ``A``, not its square.

    Args:
      features_t: ``(n_t, p)`` target features.
      features_s: ``(n_s, p)`` support features (the same feature map, e.g. the same
        random networks: :func:`kipd.kernels.random_features` with one key).
      y_s: ``(n_s, C)`` support labels.
      lambda0: relative ridge, see :func:`ridge`.

    Returns:
      ``(n_t, C)`` predictions: ``krr_predict(Phi_t Phi_s^T, Phi_s Phi_s^T, y_s)`` up to
      rounding, at ``O((n_t + n_s) k C + (n_s + p) k^2)`` with ``k = min(n_s, p)``
      instead of ``O(n_t n_s p)``.

    Example:
      >>> phi_s = jnp.eye(2); y_s = jnp.array([[0.5, -0.5], [-0.5, 0.5]])
      >>> krr_predict_features(phi_s, phi_s, y_s).round(3)
      Array([[ 0.5, -0.5],
             [-0.5,  0.5]], dtype=float32)
    """
    phi_t, phi_s = jnp.asarray(features_t), jnp.asarray(features_s)
    n_s, p = phi_s.shape
    lam = lambda0 * jnp.sum(phi_s * phi_s) / n_s
    if p > n_s:
        rows, triangle = jnp.linalg.qr(phi_s.T)  # Phi_s = triangle^T rows^T
        design, phi_t = triangle.T, phi_t @ rows
    else:
        design = phi_s
    k = design.shape[1]
    stacked = jnp.concatenate([design, jnp.sqrt(lam) * jnp.eye(k, dtype=design.dtype)])
    q, r = jnp.linalg.qr(stacked)
    weights = jax.scipy.linalg.solve_triangular(r, q[:n_s].T @ jnp.asarray(y_s), lower=False)
    return phi_t @ weights


def krr_loss_features(
    features_t: Matrix,
    features_s: Matrix,
    y_s: Matrix,
    y_t: Matrix,
    lambda0: float = LAMBDA0,
) -> tuple[jax.Array, jax.Array]:
    """The KIP loss of eq. (1) (as :func:`krr_loss`: half the mean squared error) for the
    kernel of feature maps, through :func:`krr_predict_features`.

    Returns:
      ``(loss, predictions)``, as :func:`krr_loss`.
    """
    predictions = krr_predict_features(features_t, features_s, y_s, lambda0)
    return 0.5 * jnp.mean((y_t - predictions) ** 2), predictions


def krr_platt_loss_features(
    features_t: Matrix,
    features_s: Matrix,
    y_s: Matrix,
    y_t: Matrix,
    log_scale: jax.Array | float,
    lambda0: float = LAMBDA0,
) -> tuple[jax.Array, jax.Array]:
    """RFAD's Platt-scaled cross-entropy loss for the kernel of feature maps: the KRR
    predictions of :func:`krr_predict_features` times a learned positive scale
    ``exp(log_scale)`` are the logits of a softmax, scored by the cross-entropy against
    each target's class ``argmax(y_t)`` and averaged over the ``n_t`` targets (Loo et al.,
    NeurIPS 2022, "Efficient dataset distillation using random feature approximation";
    code github.com/yolky/RFAD).

    As in RFAD's reference code (``distillation.py``: ``CrossEntropyLoss()(exp(k) * preds,
    argmax(y))``), the scale is parameterized by its log so that it stays positive, and it
    starts at ``exp(0) = 1``; KIP learns ``log_scale`` with the support set.

    Args:
      features_t: ``(n_t, p)`` target features.
      features_s: ``(n_s, p)`` support features (the same feature map).
      y_s: ``(n_s, C)`` support labels.
      y_t: ``(n_t, C)`` target labels; only their argmax (the class) counts.
      log_scale: scalar, log of the Platt scale (the logits' inverse temperature).
      lambda0: relative ridge, see :func:`ridge`.

    Returns:
      ``(loss, predictions)``: the mean cross-entropy in nats per target image, and the
      raw ``(n_t, C)`` KRR predictions (unscaled: the same as :func:`krr_loss_features`'s,
      so the accuracy they give is comparable; the positive scale does not change it).

    Example:
      >>> phi_s = jnp.eye(2); y_s = jnp.array([[0.5, -0.5], [-0.5, 0.5]])
      >>> loss, predictions = krr_platt_loss_features(phi_s, phi_s, y_s, y_s, 0.0)
      >>> round(float(loss), 4)  # -log(e^0.5 / (e^0.5 + e^-0.5)) = log(1 + e^-1)
      0.3133
    """
    predictions = krr_predict_features(features_t, features_s, y_s, lambda0)
    logits = jnp.exp(log_scale) * predictions
    classes = jnp.argmax(jnp.asarray(y_t), axis=-1)
    log_probabilities = jax.nn.log_softmax(logits, axis=-1)
    chosen = jnp.take_along_axis(log_probabilities, classes[:, None], axis=-1)
    return -jnp.mean(chosen), predictions


def accuracy(predictions: Matrix, labels: Matrix) -> jax.Array:
    """Fraction of rows whose largest prediction is the true class.

    Args:
      predictions: ``(n, C)`` KRR outputs.
      labels: ``(n,)`` integer class ids.

    Returns:
      Scalar accuracy in ``[0, 1]``.
    """
    return jnp.mean(jnp.argmax(predictions, axis=-1) == labels)
