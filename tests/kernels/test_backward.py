"""The hand-written backward of the kernels and the symmetric K(x, x).

The ReLU map's VJP (``arccos_maps``) and the box filter's are written out rather than
derived by JAX; here they are checked against JAX's own autodiff of the same formulas
(float64, 1e-9 relative), on the map alone and through a whole ConvNet kernel, and the
symmetric evaluation against the full grid.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kipd.compute
import kipd.kernels
from kipd.kernels import _relu

SHAPE = (8, 8, 2)


def _images(seed, n, dtype=np.float32):
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, *SHAPE)), dtype)


@jax.custom_jvp
def _autodiff_arccos_kernels(c):
    # The previous release's map: JAX derives the VJP from this JVP (k1' = k0; k0' is
    # 1 / (2 pi sqrt(1 - c^2)), set to 0 at c = +-1).
    return _relu.arccos_kernels(c)


@_autodiff_arccos_kernels.defjvp
def _autodiff_arccos_kernels_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    k0, k1 = _relu.arccos_kernels(c)
    clipped = jnp.clip(c, -1.0, 1.0)
    one_minus_c2 = 1.0 - clipped * clipped
    inside = one_minus_c2 > 0
    dk0 = jnp.where(inside, jax.lax.rsqrt(jnp.where(inside, one_minus_c2, 1.0)), 0.0)
    return (k0, k1), (dk0 / (2 * math.pi) * dc, k0 * dc)


def _autodiff_arccos_maps(nngp, ntk, std_product):
    k0, k1 = _autodiff_arccos_kernels(nngp / std_product)
    return k1 * std_product, None if ntk is None else k0 * ntk


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def test_relu_vjp_equals_autodiff_in_float64_including_c_equal_one():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        s = rng.uniform(0.5, 2.0, 500)
        nngp = s * np.concatenate([rng.uniform(-0.999, 0.999, 497), [1.0, -1.0, 1.0 + 1e-15]])
        ntk = rng.uniform(0.1, 3.0, 500)
        cotangents = (rng.standard_normal(500), rng.standard_normal(500))
        for fn_ntk in (ntk, None):
            ours = jax.vjp(_relu.arccos_maps, nngp, fn_ntk, s)
            reference = jax.vjp(_autodiff_arccos_maps, nngp, fn_ntk, s)
            for a, b in zip(ours[0], reference[0]):
                if b is not None:
                    assert _relative(a, b) == 0.0
            cotangent = cotangents if fn_ntk is not None else (cotangents[0], None)
            for a, b in zip(ours[1](cotangent), reference[1](cotangent)):
                if b is not None:
                    assert np.isfinite(a).all()
                    assert _relative(a, b) <= 1e-9


def test_kernel_gradients_equal_autodiff_of_the_same_kernel_in_float64(monkeypatch):
    x1, x2 = _images(1, 2, np.float64), _images(2, 3, np.float64)
    weights = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 3)), np.float64)

    def gradients():
        kernel = kipd.kernels.make("convnet", depth=1, implementation="xla")
        loss = lambda a, b: jnp.sum(weights * kernel(a, b))  # noqa: E731
        self_loss = lambda a: jnp.sum(weights[:, :2] * kernel(a))  # noqa: E731 (c == 1 entries)
        with jax.enable_x64(True):
            return (*jax.grad(loss, argnums=(0, 1))(x1, x2), jax.grad(self_loss)(x1))

    ours = gradients()
    monkeypatch.setattr(_relu, "arccos_maps", _autodiff_arccos_maps)
    reference = gradients()
    for a, b in zip(ours, reference):
        assert _relative(a, b) <= 1e-9


@pytest.mark.parametrize("pairs_per_block", [None, 4])
def test_symmetric_kernel_equals_the_full_grid(pairs_per_block):
    # None: one chunk, its upper triangle mirrored; 4: 2 x 2 chunks, 3 of them computed.
    kernel = kipd.kernels.make("convnet", depth=1, pairs_per_block=pairs_per_block)
    x = _images(4, 4)
    symmetric = kernel(x, get=("nngp", "ntk"))
    full = kernel(x, x, get=("nngp", "ntk"))
    for a, b in zip(symmetric, full):
        np.testing.assert_array_equal(a, a.T)
        assert _relative(a, b) <= 1e-6
    grad_symmetric = jax.grad(lambda a: jnp.sum(jnp.sin(kernel(a))))(x)
    grad_full = jax.grad(lambda a: jnp.sum(jnp.sin(kernel(a, a))))(x)
    assert _relative(grad_symmetric, grad_full) <= 1e-5


def test_symmetric_kernel_matrix_equals_the_full_one():
    spec = kipd.compute.KernelSpec("convvec2")
    x = _images(5, 7)
    symmetric = kipd.compute.kernel_matrix(spec, x, block_size=3)
    full = kipd.compute.kernel_matrix(spec, x, x, block_size=3)
    np.testing.assert_array_equal(symmetric, symmetric.T)
    assert _relative(symmetric, full) <= 1e-6


@pytest.mark.parametrize("pairs_per_block", [None, 4])
def test_kept_intermediates_give_the_rematerialized_values_and_gradients(pairs_per_block):
    # remat=False keeps every chunk's intermediates for the VJP (kipd.compute applies such
    # pullbacks in a later pass); the numbers are those of the rematerializing kernel.
    kept = kipd.kernels.make("convnet", depth=1, pairs_per_block=pairs_per_block, remat=False)
    remat = kipd.kernels.make("convnet", depth=1, pairs_per_block=pairs_per_block)
    x1, x2 = _images(6, 5), _images(7, 3)
    for kernel_args in ((x1, x2), (x1,)):
        values, pullback = jax.vjp(lambda *a: kept(*a), *kernel_args)
        values_ref, pullback_ref = jax.vjp(lambda *a: remat(*a), *kernel_args)
        assert _relative(values, values_ref) <= 1e-6
        cotangent = jnp.cos(values_ref)
        for a, b in zip(pullback(cotangent), pullback_ref(cotangent)):
            assert _relative(a, b) <= 1e-5
