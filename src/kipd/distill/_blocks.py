"""Kernel matrices between a whole dataset and a support set, a row block at a time.

The kernels of ``kipd.kernels`` bound their own memory (they compute pairs in blocks
internally), so KIP calls them on a whole target batch. Over a whole dataset (Label
Solve's targets, the test set) a single call would run for many minutes with no sign of
life, so :func:`kernel_matrix` loops on the host over row blocks of one compiled shape
and shows a progress bar. The distributed block plan of ``kipd.compute`` replaces it.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

KernelFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``kernel(x1, x2) -> K``: ``x1`` ``(n1, H, W, C)``, ``x2`` ``(n2, H, W, C)``, ``K`` ``(n1, n2)``."""

PAIRS_PER_CALL = 4096
"""Kernel entries per host call of :func:`kernel_matrix` (a few seconds of ConvNet on CPU)."""


@functools.cache
def _jitted(kernel: KernelFn) -> KernelFn:
    return jax.jit(kernel)


def kernel_matrix(
    kernel: KernelFn,
    x1: jax.Array | np.ndarray,
    x2: jax.Array | np.ndarray,
    *,
    desc: str | None = None,
) -> np.ndarray:
    """``kernel(x1, x2)`` on the host, one row block of ``x1`` per call.

    Every call has the same shape (the last block is padded with repeated rows, which
    are dropped), so the block function compiles once.

    Args:
      kernel: ``kernel(x1, x2) -> (n1, n2)``.
      x1: ``(n1, H, W, C)`` images, e.g. a whole train or test set.
      x2: ``(n2, H, W, C)`` images, e.g. a support set.
      desc: label of a progress bar over the blocks; ``None`` shows none.

    Returns:
      ``(n1, n2)`` NumPy array.

    Example:
      >>> import functools, kipd.kernels
      >>> k = functools.partial(kipd.kernels.make("fc1"), get="ntk")
      >>> kernel_matrix(k, np.ones((5, 4, 4, 1)), np.ones((2, 4, 4, 1))).shape
      (5, 2)
    """
    block_fn = _jitted(kernel)
    x2 = jnp.asarray(x2)
    n1 = x1.shape[0]
    rows = max(1, min(n1, PAIRS_PER_CALL // x2.shape[0]))
    out = np.empty((n1, x2.shape[0]), dtype=x2.dtype)
    for start in tqdm(
        range(0, n1, rows), desc=desc, disable=desc is None, leave=False, unit="block"
    ):
        block = np.asarray(x1[start : start + rows])
        filled = block.shape[0]
        if filled < rows:
            block = np.concatenate([block, np.asarray(x1[: rows - filled])])
        out[start : start + filled] = np.asarray(block_fn(jnp.asarray(block), x2))[:filled]
    return out
