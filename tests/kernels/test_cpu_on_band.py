"""The C++ stages after a pooling (a band input, not images) against the XLA layer maps.

The input is a real band: the XLA stage of 10x10x2 images with radius 7, pooled (radius 3
at 5x5, so the next pooling drops a row and a column), NNGP and NTK.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stage_reference import TOLERANCE, linear_functional, relative_error

from kipd.kernels._layers import avg_pool, conv, relu, serial
from kipd.kernels._stages import cpu, cpu_build
from kipd.kernels._stages.xla import xla_stage
from kipd.kernels._state import KernelState, valid_mask

RELUS = 2  # [conv, ReLU] groups of the stage under test


def _layers(pool):
    layers = [layer for _ in range(RELUS) for layer in (conv(), relu())]
    return serial(*layers, *([avg_pool()] if pool else []))


def _first_stage(x1, x2):
    """The pooled band after a one-group stage of radius 7 (x2=None: each image's own)."""
    diagonal = x2 is None
    var1 = xla_stage(x1, None, radius=7, num_relus=1).var1
    var2 = var1 if diagonal else xla_stage(x2, None, radius=7, num_relus=1).var1
    state = xla_stage(x1, x2, *(() if diagonal else (var1, var2)), radius=7, num_relus=1)
    if diagonal:
        state = state.replace(var1=())
    return avg_pool().kernel(state)


def reference(nngp, ntk, var1, var2, *, pool):
    state = KernelState(nngp=nngp, ntk=ntk, var1=tuple(var1), var2=tuple(var2), diagonal=False)
    out = _layers(pool).kernel(state)
    return out.nngp, out.ntk


def reference_variances(nngp):
    state = KernelState(nngp=nngp, ntk=None, var1=(), var2=(), diagonal=True)
    return _layers(False).kernel(state).var1


@pytest.fixture(scope="module")
def case():
    assert cpu_build.available(), cpu_build.build_error()
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    x1 = jax.random.normal(keys[0], (2, 10, 10, 2))
    x2 = jax.random.normal(keys[1], (3, 10, 10, 2))
    grid = jax.jit(_first_stage)(x1, x2)
    own1, own2 = (jax.jit(_first_stage)(x, None) for x in (x1, x2))
    variances = jax.jit(reference_variances)
    return dict(
        nngp=grid.nngp,
        ntk=grid.ntk,
        own1=own1.nngp,
        own2=own2.nngp,
        var1=variances(own1.nngp),
        var2=variances(own2.nngp),
    )


def _args(case):
    return case["nngp"], case["ntk"], case["var1"], case["var2"]


@pytest.mark.parametrize("pool", [True, False])
def test_stage_on_a_band_matches_the_layer_maps(case, pool, monkeypatch):
    """Forward and gradients in all four inputs, to float32 rounding; entries outside the
    image exactly zero; the same bits for any number of threads. The input band's
    invalid entries are ignored (zero in a band), so their cotangents are zero: the
    reference's are compared on the valid entries."""
    stage = functools.partial(cpu.conv_relu_on_band, num_relus=RELUS, pool=pool)
    wanted = jax.jit(functools.partial(reference, pool=pool))
    expected = wanted(*_args(case))
    actual = jax.jit(stage)(*_args(case))
    shape = (2, 3, 3, 3, 2, 2) if pool else (2, 3, 7, 7, 5, 5)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape == shape
        assert relative_error(a, e) <= TOLERANCE
        outside = np.asarray(e) == 0
        assert outside.any() and np.all(np.asarray(a)[outside] == 0)

    loss = linear_functional(jax.random.PRNGKey(4), shape)
    gradient = {
        name: jax.jit(jax.grad(lambda *args, f=f: loss(f(*args)), argnums=(0, 1, 2, 3)))
        for name, f in (("cpu", stage), ("reference", wanted))
    }
    actual, expected = (gradient[name](*_args(case)) for name in ("cpu", "reference"))
    valid = valid_mask((3, 3), (5, 5)).astype(bool)
    for name, a, e in zip(("nngp", "ntk"), actual[:2], expected[:2]):
        a, e = np.asarray(a), np.asarray(e)
        assert relative_error(a[..., valid], e[..., valid]) <= TOLERANCE, name
        assert np.all(a[..., ~valid] == 0), name
    for a, e in zip(jax.tree.leaves(actual[2:]), jax.tree.leaves(expected[2:]), strict=True):
        assert relative_error(a, e) <= TOLERANCE

    def outputs_with(threads):
        monkeypatch.setenv("KIPD_CPU_THREADS", threads)
        outputs = (jax.jit(stage)(*_args(case)), gradient["cpu"](*_args(case)))
        return [np.asarray(a) for a in jax.tree.leaves(outputs)]

    for one, other in zip(outputs_with("1"), outputs_with("3"), strict=True):
        np.testing.assert_array_equal(one, other)


def test_variances_match_the_xla_diagonal_pass(case):
    variances = jax.jit(functools.partial(cpu.conv_relu_on_band_variances, num_relus=RELUS))
    for own, expected in ((case["own1"], case["var1"]), (case["own2"], case["var2"])):
        actual = variances(own)
        assert len(actual) == RELUS
        for a, e in zip(actual, expected, strict=True):
            assert a.shape == (own.shape[0], 5, 5)
            assert relative_error(a, e) <= 1e-6
    cotangent = tuple(jax.random.normal(jax.random.PRNGKey(5), (RELUS, 2, 5, 5)))
    actual = jax.vjp(variances, case["own1"])[1](cotangent)[0]
    expected = jax.vjp(reference_variances, case["own1"])[1](cotangent)[0]
    assert relative_error(actual, expected) <= TOLERANCE


def test_diagonal_is_the_grid_diagonal_and_correlation_is_exactly_one():
    """Each image's own band through ``conv_relu_on_band_diagonal`` equals the grid's
    pairs (i, i), bit for bit; with the stage's own variances a pixel with itself has
    c == 1 at every ReLU (the last NNGP at offset 0 is k1(1) = 1/2 of the last variance,
    bit for bit), and the gradient through the diagonal pass is finite and equals the
    grid's."""
    x = jax.random.normal(jax.random.PRNGKey(6), (2, 10, 10, 2))
    grid = jax.jit(_first_stage)(x, x)
    index = np.arange(2)
    own_nngp, own_ntk = grid.nngp[index, index], grid.ntk[index, index]
    hyper = dict(num_relus=RELUS, pool=False)
    variances = cpu.conv_relu_on_band_variances(own_nngp, num_relus=RELUS)
    nngp, ntk = cpu.conv_relu_on_band(grid.nngp, grid.ntk, variances, variances, **hyper)
    np.testing.assert_array_equal(nngp[index, index, 3, 3], 0.5 * np.asarray(variances[-1]))
    diagonal = jax.jit(functools.partial(cpu.conv_relu_on_band_diagonal, **hyper))
    for d, g in zip(diagonal(own_nngp, own_ntk, variances), (nngp, ntk), strict=True):
        np.testing.assert_array_equal(d, np.asarray(g)[index, index])

    loss = linear_functional(jax.random.PRNGKey(7), (2, 7, 7, 5, 5))

    def through_diagonal(own_nngp, own_ntk):
        own_variances = cpu.conv_relu_on_band_variances(own_nngp, num_relus=RELUS)
        return loss(diagonal(own_nngp, own_ntk, own_variances))

    def through_grid(own_nngp, own_ntk):
        own_variances = cpu.conv_relu_on_band_variances(own_nngp, num_relus=RELUS)
        # The grid of the images with themselves, only its pairs (i, i) kept.
        outputs = cpu.conv_relu_on_band(
            jnp.zeros_like(grid.nngp).at[index, index].set(own_nngp),
            jnp.zeros_like(grid.ntk).at[index, index].set(own_ntk),
            own_variances,
            own_variances,
            **hyper,
        )
        return loss(tuple(out[index, index] for out in outputs))

    actual, expected = (
        jax.jit(jax.grad(f, argnums=(0, 1)))(own_nngp, own_ntk)
        for f in (through_diagonal, through_grid)
    )
    for a, e in zip(actual, expected, strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        assert relative_error(a, e) <= TOLERANCE


def test_bad_bands_are_rejected(case):
    nngp, ntk, var1, var2 = _args(case)
    with pytest.raises(ValueError, match=r"\(n1, n2, A, A, H, W\)"):
        cpu.conv_relu_on_band(nngp[0], ntk[0], var1, var2, num_relus=RELUS)
    with pytest.raises(ValueError, match="odd offset window"):
        cpu.conv_relu_on_band(nngp[:, :, 1:], ntk[:, :, 1:], var1, var2, num_relus=RELUS)
    with pytest.raises(ValueError, match="num_relus"):
        cpu.conv_relu_on_band(nngp, ntk, var1[:1], var2, num_relus=RELUS)
    with pytest.raises(ValueError, match="diagonal band"):
        cpu.conv_relu_on_band_variances(nngp, num_relus=RELUS)
    with pytest.raises(ValueError, match="float32 only"):
        cpu.conv_relu_on_band(nngp.astype(jnp.bfloat16), ntk, var1, var2, num_relus=RELUS)
