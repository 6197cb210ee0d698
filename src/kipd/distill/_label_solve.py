"""Label Solve (eq. 2): the least-norm support labels that minimize the KRR loss."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from kipd.distill._krr import LAMBDA0

RCOND = 1e-6
"""Default relative cutoff of singular values in Label Solve (see :func:`label_solve`)."""


def label_solve(
    k_ts: np.ndarray,
    k_ss: np.ndarray,
    y_t: np.ndarray,
    lambda0: float = LAMBDA0,
    rcond: float = RCOND,
) -> np.ndarray:
    """Support labels ``y_s* = (K_ts (K_ss + lambda I)^-1)^+ y_t`` (paper, eq. 2).

    Computed on the host in float64: ``A = K_ts (K_ss + lambda I)^-1`` by a Cholesky
    solve, then the least-norm least-squares solution of ``A y_s = y_t`` by an SVD
    (``scipy.linalg.lstsq``). Singular values of ``A`` below ``rcond * max(sigma)`` are
    treated as zero: kernels computed in float32 carry relative errors near ``1e-7``, so
    directions below ``1e-6`` of the largest are rounding noise, and inverting them would
    give huge, meaningless labels.

    Args:
      k_ts: ``(n_t, n_s)`` kernel between the whole target set and the support set.
      k_ss: ``(n_s, n_s)`` support-support kernel.
      y_t: ``(n_t, C)`` target labels (mean-centred one-hot).
      lambda0: relative ridge, ``lambda = lambda0 * tr(K_ss) / n_s``.
      rcond: relative singular-value cutoff of the pseudo-inverse.

    Returns:
      ``(n_s, C)`` float32 support labels.

    Example:
      >>> k_ss = np.eye(2); k_ts = np.array([[1.0, 0.0], [0.0, 2.0]])
      >>> label_solve(k_ts, k_ss, np.array([[1.0, 0.0], [0.0, 1.0]])).round(3)
      array([[1. , 0. ],
             [0. , 0.5]], dtype=float32)
    """
    k_ss = np.asarray(k_ss, np.float64)
    k_ts = np.asarray(k_ts, np.float64)
    n_s = k_ss.shape[0]
    system = k_ss + lambda0 * np.trace(k_ss) / n_s * np.eye(n_s)
    # A = K_ts system^-1, i.e. A^T = system^-1 K_ts^T (the system is symmetric).
    a = scipy.linalg.cho_solve(scipy.linalg.cho_factor(system), k_ts.T).T
    y_s, *_ = scipy.linalg.lstsq(a, np.asarray(y_t, np.float64), cond=rcond)
    return y_s.astype(np.float32)
