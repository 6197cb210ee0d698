"""What the fused-stage tests (test_cpu_band.py, test_pallas.py) compare against: the XLA
layer maps of the full-resolution stage, an error measure, and a random linear functional."""

import jax
import jax.numpy as jnp
import numpy as np

from kipd.kernels._layers import avg_pool
from kipd.kernels._stages.xla import xla_stage

RELUS = 2
RADIUS = 3
TOLERANCE = 1e-5


def reference_band(x1, x2, var1, var2, *, radius, num_relus):
    """The XLA path: (conv, relu) x num_relus on the input band, grid pass."""
    state = xla_stage(x1, x2, var1, var2, radius=radius, num_relus=num_relus)
    return state.nngp, state.ntk


def reference_pooled_band(x1, x2, var1, var2, *, radius, num_relus):
    """The XLA path of a stage that pools: the band above, then avg_pool's kernel map."""
    state = xla_stage(x1, x2, var1, var2, radius=radius, num_relus=num_relus)
    state = avg_pool().kernel(state)
    return state.nngp, state.ntk


def reference_variances(x, *, radius, num_relus):
    """The XLA diagonal pass: the variances at each ReLU's input."""
    return xla_stage(x, None, radius=radius, num_relus=num_relus).var1


def relative_error(actual, expected) -> float:
    """Max absolute error over max absolute value."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def linear_functional(key, shape):
    """A random linear functional of (nngp, ntk), so every output entry gets a gradient."""
    w_nngp, w_ntk = jax.random.normal(key, (2, *shape))

    def apply(outputs):
        nngp, ntk = outputs
        return jnp.sum(w_nngp * nngp) + jnp.sum(w_ntk * ntk)

    return apply
