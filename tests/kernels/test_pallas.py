"""The fused Pallas stage (interpret mode on the CPU) against the XLA layers it replaces."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stage_reference import (  # tests/kernels, on pytest's pythonpath
    RADIUS,
    RELUS,
    TOLERANCE,
    reference_variances,
    relative_error,
)
from stage_reference import (
    linear_functional as _linear_functional,
)
from stage_reference import (
    reference_band as reference_stage,
)

from kipd.kernels._stages.pallas import conv_relu_band, conv_relu_variances


@pytest.fixture(scope="module")
def case():
    """Two pairs of distinct 12x10x3 images (non-square, padded to 16x16 tiles), and the
    compiled functions the tests share."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x1 = jax.random.normal(keys[0], (2, 12, 10, 3))
    x2 = jax.random.normal(keys[1], (2, 12, 10, 3))
    # The diagonal pass on the grid pass's band: XLA then gives c == 1 exactly for a pixel
    # with itself (with radius 0 here it would not, the arithmetic compiles differently).
    reference_var = jax.jit(functools.partial(reference_variances, radius=RADIUS, num_relus=RELUS))
    pallas_var = jax.jit(functools.partial(conv_relu_variances, num_relus=RELUS))
    band = functools.partial(conv_relu_band, radius=RADIUS, num_relus=RELUS)
    reference = functools.partial(reference_stage, radius=RADIUS, num_relus=RELUS)
    loss = _linear_functional(keys[2], (2, 2, 2 * RADIUS + 1, 2 * RADIUS + 1, 12, 10))

    def gradient(stage):
        return jax.jit(jax.grad(lambda *args: loss(stage(*args)), argnums=(0, 1, 2, 3)))

    def vjp(function):
        return jax.jit(lambda x, cotangent: jax.vjp(function, x)[1](cotangent)[0])

    return dict(
        x1=x1,
        x2=x2,
        var1=reference_var(x1),
        var2=reference_var(x2),
        loss=loss,
        band=jax.jit(band),
        reference=jax.jit(reference),
        band_grad=gradient(band),
        reference_grad=gradient(reference),
        variances=pallas_var,
        reference_variances=reference_var,
        variances_vjp=vjp(pallas_var),
        reference_variances_vjp=vjp(reference_var),
    )


def test_forward_matches_reference(case):
    args = case["x1"], case["x2"], case["var1"], case["var2"]
    for actual, expected in zip(case["band"](*args), case["reference"](*args)):
        assert actual.shape == expected.shape == (2, 2, 7, 7, 12, 10)
        assert relative_error(actual, expected) <= TOLERANCE


def test_gradients_match_reference(case):
    args = case["x1"], case["x2"], case["var1"], case["var2"]
    actual, expected = case["band_grad"](*args), case["reference_grad"](*args)
    for name, a, e in zip(("x1", "x2", "var1", "var2"), actual, expected):
        for a_leaf, e_leaf in zip(jax.tree.leaves(a), jax.tree.leaves(e)):
            assert a_leaf.shape == e_leaf.shape
            assert relative_error(a_leaf, e_leaf) <= TOLERANCE, name


def test_radius_zero_matches_reference(case):
    """ConvVec's stage: only the offset-0 plane."""
    args = case["x1"], case["x2"], case["var1"], case["var2"]
    band = conv_relu_band(*args, radius=0, num_relus=RELUS)
    for actual, expected in zip(band, reference_stage(*args, radius=0, num_relus=RELUS)):
        assert actual.shape == (2, 2, 1, 1, 12, 10)
        assert relative_error(actual, expected) <= TOLERANCE


def test_variances_and_gradient_match_reference(case):
    x = case["x1"]
    for actual, expected in zip(case["variances"](x), case["var1"]):
        assert actual.shape == x.shape[:3]
        assert relative_error(actual, expected) <= TOLERANCE
    cotangent = tuple(jax.random.normal(jax.random.PRNGKey(1), (RELUS, *x.shape[:3])))
    actual = case["variances_vjp"](x, cotangent)
    assert relative_error(actual, case["reference_variances_vjp"](x, cotangent)) <= TOLERANCE


def _offset0_chain_float64(x: np.ndarray, num_relus: int):
    """NNGP and NTK of each image with itself at offset 0, where c == 1: k0 = k1 = 1/2."""
    w2, b2 = (2**0.5) ** 2, 0.1**2
    nngp = np.mean(np.asarray(x, np.float64) ** 2, axis=-1)

    def box(cov):
        padded = np.pad(cov, [(0, 0), (1, 1), (1, 1)])
        height, width = cov.shape[1:]
        return sum(padded[:, a : a + height, b : b + width] for a in range(3) for b in range(3)) / 9

    ntk = None
    for _ in range(num_relus):
        nngp = w2 * box(nngp) + b2
        ntk = nngp if ntk is None else nngp + w2 * box(ntk)
        nngp, ntk = nngp / 2, ntk / 2
    return nngp, ntk


def test_identical_images_have_correlation_exactly_one(case):
    """With its own variances, a pixel with itself has c == 1: the diagonal is exact."""
    x = case["x1"]
    variances = case["variances"](x)
    nngp, ntk = case["band"](x, x, variances, variances)
    diagonal = np.arange(x.shape[0])
    nngp0, ntk0 = nngp[diagonal, diagonal, RADIUS, RADIUS], ntk[diagonal, diagonal, RADIUS, RADIUS]
    # At c == 1 exactly, sqrt(1 - c^2) = 0 and k1 = k0 = fl(fl(pi) / (2 pi)): the last NNGP
    # is that constant times the last variance, bit for bit; c = 1 - 1e-7 would add ~1e-4.
    k0 = np.float32(np.float32(math.pi) * np.float32(1 / (2 * math.pi)))
    np.testing.assert_array_equal(nngp0, k0 * np.asarray(variances[-1]))
    exact_nngp, exact_ntk = _offset0_chain_float64(x, RELUS)
    assert relative_error(nngp0, exact_nngp) <= 1e-6
    assert relative_error(ntk0, exact_ntk) <= 1e-6

    def pipeline_gradient(variances, variances_vjp, band_grad):
        """Gradient of loss(band(x, x, v(x), v(x))), by the chain rule on compiled parts."""
        v = variances(x)
        g_x1, g_x2, g_v1, g_v2 = band_grad(x, x, v, v)
        return g_x1 + g_x2 + variances_vjp(x, tuple(a + b for a, b in zip(g_v1, g_v2)))

    actual = pipeline_gradient(case["variances"], case["variances_vjp"], case["band_grad"])
    expected = pipeline_gradient(
        case["reference_variances"], case["reference_variances_vjp"], case["reference_grad"]
    )
    assert bool(jnp.all(jnp.isfinite(actual)))
    assert relative_error(actual, expected) <= TOLERANCE


def test_mnist_shape_matches_reference():
    """The ConvNet's stage at 28x28x1, radius 7 (a 32x32 tile), one pair."""
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    x1, x2 = (jax.random.normal(key, (1, 28, 28, 1)) for key in keys)
    var1 = reference_variances(x1, radius=0, num_relus=RELUS)
    var2 = reference_variances(x2, radius=0, num_relus=RELUS)
    band = conv_relu_band(x1, x2, var1, var2, radius=7, num_relus=RELUS)
    for actual, expected in zip(
        band, reference_stage(x1, x2, var1, var2, radius=7, num_relus=RELUS)
    ):
        assert actual.shape == (1, 1, 15, 15, 28, 28)
        assert relative_error(actual, expected) <= TOLERANCE


def test_lowers_to_triton_for_cuda():
    """Forward and gradient export for CUDA from this CPU-only machine (no GPU needed)."""
    n, shape = 2, (32, 32, 3)
    images = jax.ShapeDtypeStruct((n, *shape), jnp.float32)
    variances = (jax.ShapeDtypeStruct((n, *shape[:2]), jnp.float32),) * RELUS
    band = functools.partial(conv_relu_band, radius=7, num_relus=RELUS, interpret=False)

    def loss(x1, x2):
        v1 = conv_relu_variances(x1, num_relus=RELUS, interpret=False)
        v2 = conv_relu_variances(x2, num_relus=RELUS, interpret=False)
        nngp, ntk = band(x1, x2, v1, v2)
        return jnp.sum(nngp) + jnp.sum(ntk * ntk)

    export = functools.partial(
        jax.export.export,
        platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )
    forward = export(jax.jit(band))(images, images, variances, variances)
    assert [a.shape for a in forward.out_avals] == [(n, n, 15, 15, 32, 32)] * 2
    gradient = export(jax.jit(jax.grad(loss, argnums=(0, 1))))(images, images)
    assert [a.shape for a in gradient.out_avals] == [(n, *shape)] * 2
    text = gradient.mlir_module()
    # Variances of both inputs, the band, and the three backward kernels.
    assert text.count("@__gpu$xla.gpu.triton(") == 6
    # The Triton IR (MLIR bytecode inside) divides and takes roots with IEEE PTX, never
    # with arith.divf, which Triton lowers to the approximate div.full.f32.
    assert "div.rn.f32" in text and "sqrt.rn.f32" in text and "\\00divf\\00" not in text


def test_rejects_wrong_variances(case):
    with pytest.raises(ValueError, match="num_relus=2"):
        conv_relu_band(
            case["x1"], case["x2"], case["var1"][:1], case["var2"], radius=1, num_relus=RELUS
        )
