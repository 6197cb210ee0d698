"""KRR test accuracy from precomputed kernel matrices, for analyses that slice them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kipd.distill import accuracy, krr_predict


def krr_test_accuracy(
    k_ts: np.ndarray | jax.Array,
    k_ss: np.ndarray | jax.Array,
    labels: np.ndarray | jax.Array,
    test_labels: np.ndarray | jax.Array,
    lambda0: float,
) -> float:
    """KRR test accuracy from kernel matrices (``kipd.distill``'s ``krr_predict``).

    Args:
      k_ts: ``(t, n)``; k_ss: ``(n, n)``; labels: ``(n, C)``; test_labels: ``(t,)``.
      lambda0: relative ridge.

    Returns:
      Accuracy in ``[0, 1]``.
    """
    predictions = krr_predict(jnp.asarray(k_ts), jnp.asarray(k_ss), jnp.asarray(labels), lambda0)
    return float(accuracy(predictions, test_labels))
