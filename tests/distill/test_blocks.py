"""The host-side kernel matrix loop: ragged blocks give the whole kernel."""

import jax
import numpy as np

from kipd.distill import _blocks


def test_kernel_matrix_in_ragged_blocks_equals_one_call(ntk, monkeypatch):
    kernel = ntk("convvec1")
    x1 = jax.random.normal(jax.random.PRNGKey(0), (23, 5, 5, 1))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 5, 1))
    monkeypatch.setattr(_blocks, "PAIRS_PER_CALL", 15)  # 5 rows per call, last block of 3
    got = _blocks.kernel_matrix(kernel, np.asarray(x1), x2, desc="test")
    assert isinstance(got, np.ndarray) and got.shape == (23, 3)
    np.testing.assert_allclose(got, kernel(x1, x2), rtol=1e-6)
