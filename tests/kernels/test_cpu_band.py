"""The C++ full-resolution stage (XLA FFI on the CPU) against the XLA layer maps it replaces.

Nothing here is skipped: without g++ the kernel cannot build and these tests fail (CI
has g++), with the compiler's error in the message.
"""

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
    reference_band,
    reference_pooled_band,
    reference_variances,
    relative_error,
)
from stage_reference import (
    linear_functional as _linear_functional,
)

from kipd.kernels._stages import cpu, cpu_build


def test_kernel_builds():
    assert cpu_build.available(), cpu_build.build_error()
    assert cpu_build.build_error() is None


@pytest.fixture(scope="module")
def case():
    """2 x 3 pairs of distinct 10x10x2 images, their XLA variances, and the compiled
    functions the tests share."""
    assert cpu_build.available(), cpu_build.build_error()
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x1 = jax.random.normal(keys[0], (2, 10, 10, 2))
    x2 = jax.random.normal(keys[1], (3, 10, 10, 2))
    reference_var = jax.jit(functools.partial(reference_variances, radius=RADIUS, num_relus=RELUS))
    band = functools.partial(cpu.conv_relu_band, radius=RADIUS, num_relus=RELUS)
    reference = functools.partial(reference_band, radius=RADIUS, num_relus=RELUS)
    loss = _linear_functional(keys[2], (2, 3, 2 * RADIUS + 1, 2 * RADIUS + 1, 10, 10))

    def gradient(stage):
        return jax.jit(jax.grad(lambda *args: loss(stage(*args)), argnums=(0, 1, 2, 3)))

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
        variances=jax.jit(functools.partial(cpu.conv_relu_variances, num_relus=RELUS)),
        reference_variances=reference_var,
    )


def _args(case):
    return case["x1"], case["x2"], case["var1"], case["var2"]


def test_forward_matches_reference(case):
    for actual, expected in zip(case["band"](*_args(case)), case["reference"](*_args(case))):
        assert actual.shape == expected.shape == (2, 3, 7, 7, 10, 10)
        assert actual.dtype == jnp.float32
        assert relative_error(actual, expected) <= TOLERANCE
        # Entries whose second position lies outside the image are exactly zero.
        outside = np.asarray(expected) == 0
        assert outside.any() and np.all(np.asarray(actual)[outside] == 0)


def test_gradients_match_reference(case):
    actual, expected = case["band_grad"](*_args(case)), case["reference_grad"](*_args(case))
    for name, a, e in zip(("x1", "x2", "var1", "var2"), actual, expected):
        for a_leaf, e_leaf in zip(jax.tree.leaves(a), jax.tree.leaves(e), strict=True):
            assert a_leaf.shape == e_leaf.shape
            assert relative_error(a_leaf, e_leaf) <= TOLERANCE, name


def test_partial_gradients_equal_the_full_gradient(case, monkeypatch):
    """Differentiating in some inputs only (the backward then skips the others' work,
    via symbolic zeros), or through one output only (the other's cotangent is a
    symbolic zero, never materialized), gives the same numbers, bit for bit (one
    thread: the same order of every sum)."""
    monkeypatch.setenv("KIPD_CPU_THREADS", "1")
    args = _args(case)
    full = case["band_grad"](*args)
    for argnums in (0, 1, 2, 3, (0, 2), (1, 3)):
        partial = jax.jit(jax.grad(lambda *a: case["loss"](case["band"](*a)), argnums=argnums))(
            *args
        )
        numbers = argnums if isinstance(argnums, tuple) else (argnums,)
        partial = partial if isinstance(argnums, tuple) else (partial,)
        for number, actual in zip(numbers, partial, strict=True):
            for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(full[number]), strict=True):
                np.testing.assert_array_equal(a, e, err_msg=f"argnums={argnums}")

    weights = jax.random.normal(jax.random.PRNGKey(5), (2, 3, 7, 7, 10, 10))
    for output in (0, 1):

        def one(*a, output=output):  # the other output's cotangent is a symbolic zero
            return jnp.sum(weights * case["band"](*a)[output])

        def both(*a, output=output):  # ... here a materialized zero band
            outputs = case["band"](*a)
            return jnp.sum(weights * outputs[output]) + jnp.sum(0.0 * outputs[1 - output])

        actual, expected = (jax.jit(jax.grad(f, argnums=(0, 1, 2, 3)))(*args) for f in (one, both))
        for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, e, err_msg=f"output={output}")

    # Nothing perturbed on the second side through the variance chain either: the
    # kernel's own variances, differentiated in x1 only, against the full gradient.
    variances = case["variances"]

    def through_variances(x1, x2):
        return case["loss"](case["band"](x1, x2, variances(x1), variances(x2)))

    full = jax.jit(jax.grad(through_variances, argnums=(0, 1)))(case["x1"], case["x2"])
    for argnum in (0, 1):
        partial = jax.jit(jax.grad(through_variances, argnums=argnum))(case["x1"], case["x2"])
        np.testing.assert_array_equal(partial, full[argnum])


@pytest.mark.parametrize(
    "shape, radius, num_relus",
    [
        ((6, 5, 2), 0, 1),  # ConvVec's stage: the offset-0 plane only; one group
        ((7, 16, 3), 2, 3),
    ],  # rows of whole vectors (written in place); three groups
)
def test_other_shapes_match_reference(shape, radius, num_relus):
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    x1, x2 = (jax.random.normal(key, (2, *shape)) for key in keys[:2])
    variances = jax.jit(functools.partial(reference_variances, radius=radius, num_relus=num_relus))
    var1, var2 = variances(x1), variances(x2)
    band = functools.partial(cpu.conv_relu_band, radius=radius, num_relus=num_relus)
    reference = functools.partial(reference_band, radius=radius, num_relus=num_relus)
    for actual, expected in zip(band(x1, x2, var1, var2), jax.jit(reference)(x1, x2, var1, var2)):
        assert relative_error(actual, expected) <= TOLERANCE
    loss = _linear_functional(keys[2], (2, 2, 2 * radius + 1, 2 * radius + 1, *shape[:2]))
    actual, expected = (
        jax.jit(jax.grad(lambda *args: loss(f(*args)), argnums=(0, 1, 2, 3)))(x1, x2, var1, var2)
        for f in (band, reference)
    )
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert relative_error(a, e) <= TOLERANCE


def test_convnet_shape_matches_reference():
    """The ConvNet's stage at 28x28x1, radius 7 (rows padded to whole vectors)."""
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    x1, x2 = (jax.random.normal(key, (n, 28, 28, 1)) for key, n in zip(keys, (1, 2)))
    var1 = cpu.conv_relu_variances(x1, num_relus=RELUS)
    var2 = cpu.conv_relu_variances(x2, num_relus=RELUS)
    band = cpu.conv_relu_band(x1, x2, var1, var2, radius=7, num_relus=RELUS)
    expected = jax.jit(functools.partial(reference_band, radius=7, num_relus=RELUS))(
        x1, x2, var1, var2
    )
    for actual, wanted in zip(band, expected):
        assert actual.shape == (1, 2, 15, 15, 28, 28)
        assert relative_error(actual, wanted) <= TOLERANCE
        outside = np.asarray(wanted) == 0
        assert np.all(np.asarray(actual)[outside] == 0)


@pytest.mark.parametrize("shape", [(10, 10, 2), (9, 7, 1)])  # odd: a row, a column dropped
def test_pooled_stage_matches_reference(shape, monkeypatch):
    """``pool=True`` fuses the 2x2 average pooling after the stage: the XLA stage followed
    by avg_pool's kernel map, forward and gradient in all four inputs; entries whose
    second position lies outside the pooled image exactly zero; the diagonal the grid's
    diagonal bit for bit (the exact c == 1 of the next ReLU needs it); the same bits for
    any thread count (a pair's planes are added in plane order by one thread)."""
    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    x1, x2 = (jax.random.normal(key, (n, *shape)) for key, n in zip(keys[:2], (2, 3)))
    var1 = cpu.conv_relu_variances(x1, num_relus=RELUS)
    var2 = cpu.conv_relu_variances(x2, num_relus=RELUS)
    hyper = dict(radius=RADIUS, num_relus=RELUS)
    band = functools.partial(cpu.conv_relu_band, **hyper, pool=True)
    reference = functools.partial(reference_pooled_band, **hyper)
    expected = jax.jit(reference)(x1, x2, var1, var2)
    coarse = (2 * ((RADIUS - 1) // 2) + 1,) * 2
    for actual, wanted in zip(band(x1, x2, var1, var2), expected, strict=True):
        assert actual.shape == (2, 3, *coarse, shape[0] // 2, shape[1] // 2)
        assert relative_error(actual, wanted) <= TOLERANCE
        outside = np.asarray(wanted) == 0
        assert outside.any() and np.all(np.asarray(actual)[outside] == 0)

    loss = _linear_functional(keys[2], expected[0].shape)
    gradients = {
        name: jax.jit(jax.grad(lambda *args, f=f: loss(f(*args)), argnums=(0, 1, 2, 3)))
        for name, f in (("cpu", band), ("reference", reference))
    }
    actual = gradients["cpu"](x1, x2, var1, var2)
    for a, e in zip(
        jax.tree.leaves(actual),
        jax.tree.leaves(gradients["reference"](x1, x2, var1, var2)),
        strict=True,
    ):
        assert relative_error(a, e) <= TOLERANCE

    def outputs_with(threads):
        monkeypatch.setenv("KIPD_CPU_THREADS", threads)
        outputs = (band(x1, x2, var1, var2), gradients["cpu"](x1, x2, var1, var2))
        return [np.asarray(a) for a in jax.tree.leaves(outputs)]

    for one, other in zip(outputs_with("1"), outputs_with("3"), strict=True):
        np.testing.assert_array_equal(one, other)

    diagonal = cpu.conv_relu_band_diagonal(x1, var1, **hyper, pool=True)
    grid = band(x1, x1, var1, var1)
    for d, g in zip(diagonal, grid, strict=True):
        np.testing.assert_array_equal(d, np.asarray(g)[[0, 1], [0, 1]])


def test_pooling_needs_a_band_and_two_pixels():
    x = jnp.ones((1, 4, 4, 1))
    var = cpu.conv_relu_variances(x, num_relus=1)
    with pytest.raises(ValueError, match="pool=True needs radius >= 1"):
        cpu.conv_relu_band(x, x, var, var, radius=0, num_relus=1, pool=True)


def test_variances_match_xla_diagonal_pass(case):
    for x, expected_all in ((case["x1"], case["var1"]), (case["x2"], case["var2"])):
        actual_all = case["variances"](x)
        assert len(actual_all) == RELUS
        for actual, expected in zip(actual_all, expected_all):
            assert actual.shape == x.shape[:3]
            assert relative_error(actual, expected) <= 1e-6


def test_variances_gradient_matches_reference(case):
    x = case["x1"]
    cotangent = tuple(jax.random.normal(jax.random.PRNGKey(1), (RELUS, *x.shape[:3])))
    actual = jax.vjp(case["variances"], x)[1](cotangent)[0]
    expected = jax.vjp(case["reference_variances"], x)[1](cotangent)[0]
    assert relative_error(actual, expected) <= TOLERANCE


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
    """With its own variances, a pixel with itself has c == 1 at every ReLU."""
    x = case["x2"]
    variances = case["variances"](x)
    nngp, ntk = case["band"](x, x, variances, variances)
    diagonal = np.arange(x.shape[0])
    nngp0 = nngp[diagonal, diagonal, RADIUS, RADIUS]
    ntk0 = ntk[diagonal, diagonal, RADIUS, RADIUS]
    # At c == 1 exactly, sqrt(1 - c^2) = 0 and k1 = k0 = fl(fl(pi) fl(1 / (2 pi))), which is
    # 1/2 in float32: the last NNGP is half the last variance, bit for bit (the earlier
    # ReLUs must have had c == 1 as well, or the last variance would not be reproduced).
    k0 = np.float32(np.float32(math.pi) * np.float32(1 / (2 * math.pi)))
    assert k0 == 0.5
    np.testing.assert_array_equal(nngp0, k0 * np.asarray(variances[-1]))
    exact_nngp, exact_ntk = _offset0_chain_float64(x, RELUS)
    assert relative_error(nngp0, exact_nngp) <= 1e-6
    assert relative_error(ntk0, exact_ntk) <= 1e-6

    loss = _linear_functional(jax.random.PRNGKey(7), nngp.shape)

    def pipeline(band, variances):
        def total(x):
            v = variances(x)
            return loss(band(x, x, v, v))

        return jax.jit(jax.grad(total))

    actual = pipeline(case["band"], case["variances"])(x)
    expected = pipeline(case["reference"], case["reference_variances"])(x)
    assert bool(jnp.all(jnp.isfinite(actual)))
    assert relative_error(actual, expected) <= TOLERANCE


def test_diagonal_equals_the_grid_diagonal(case):
    """``conv_relu_band_diagonal`` is the grid's (i, i) pairs, bit for bit, and so is its
    gradient up to the order of the sums (both sides of a pair land on the one image).

    The variances are the kernel's own, so that c == 1 exactly at offset 0, as the
    integrator runs it: with the XLA path's variances c = 1 - 1e-7 there, and d k0 / d c
    ~ 1 / sqrt(1 - c^2) makes any gradient through those entries ill-conditioned.
    """
    x = case["x2"]
    var = case["variances"](x)
    diagonal = jax.jit(
        functools.partial(cpu.conv_relu_band_diagonal, radius=RADIUS, num_relus=RELUS)
    )
    nngp, ntk = diagonal(x, var)
    assert nngp.shape == ntk.shape == (3, 7, 7, 10, 10)
    index = np.arange(3)

    def grid_diagonal(x, var):
        return tuple(out[index, index] for out in case["band"](x, x, var, var))

    grid_nngp, grid_ntk = grid_diagonal(x, var)
    np.testing.assert_array_equal(nngp, grid_nngp)
    np.testing.assert_array_equal(ntk, grid_ntk)

    loss = _linear_functional(jax.random.PRNGKey(8), nngp.shape)
    actual, expected = (
        jax.jit(jax.grad(lambda x, var: loss(f(x, var)), argnums=(0, 1)))(x, var)
        for f in (diagonal, grid_diagonal)
    )
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        assert relative_error(a, e) <= TOLERANCE


def test_thread_count_does_not_change_the_forward_or_the_gradient(case, monkeypatch):
    """Each (pair, plane) is computed whole by one thread, and the backward sums fixed
    slices of the work in a fixed order: the split is invisible, bit for bit (a block
    re-run on another worker after a failure gives the identical gradient)."""
    weights = jax.random.normal(jax.random.PRNGKey(9), (2, *case["band"](*_args(case))[0].shape))

    def loss(*args):
        nngp, ntk = case["band"](*args)
        return jnp.sum(weights[0] * nngp) + jnp.sum(weights[1] * ntk)

    gradient = jax.grad(loss, argnums=(0, 1, 2, 3))
    outputs = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("KIPD_CPU_THREADS", threads)
        band = [np.asarray(a) for a in case["band"](*_args(case))]
        outputs[threads] = band + [np.asarray(a) for a in jax.tree.leaves(gradient(*_args(case)))]
    for threads in ("2", "3"):
        for one, other in zip(outputs["1"], outputs[threads], strict=True):
            np.testing.assert_array_equal(one, other)


def test_float64_is_rejected():
    """float64 goes to the XLA path; the C++ kernel says so rather than downcasting."""
    with jax.enable_x64(True):
        x = jnp.ones((1, 4, 4, 1), jnp.float64)
        var = (jnp.ones((1, 4, 4), jnp.float64),) * RELUS
        with pytest.raises(ValueError, match="float32 only.*XLA path"):
            cpu.conv_relu_band(x, x, var, var, radius=1, num_relus=RELUS)
        with pytest.raises(ValueError, match="float32 only"):
            cpu.conv_relu_variances(x, num_relus=RELUS)


def test_bad_shapes_are_rejected(case):
    x1, x2, var1, var2 = _args(case)
    with pytest.raises(ValueError, match="num_relus"):
        cpu.conv_relu_band(x1, x2, var1[:1], var2, radius=RADIUS, num_relus=RELUS)
    with pytest.raises(ValueError, match="must match"):
        cpu.conv_relu_band(x1, x2[:, :8], var1, var2, radius=RADIUS, num_relus=RELUS)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KIPD_CACHE_DIR", str(tmp_path))
    path = cpu_build._library_path()
    assert path.parent == tmp_path and path.suffix == ".so"


def test_missing_compiler_makes_it_unavailable(monkeypatch, tmp_path):
    """No compiler (and nothing cached): available() is False with the reason kept, and
    the API raises a RuntimeError that carries it; nothing crashes."""
    monkeypatch.setenv("KIPD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_build, "_COMPILER", "kipd-no-such-compiler")
    monkeypatch.setattr(cpu_build, "_state", {})
    assert not cpu_build.available()
    assert "kipd-no-such-compiler" in cpu_build.build_error()
    x = jnp.ones((1, 4, 4, 1))
    with pytest.raises(RuntimeError, match="kipd-no-such-compiler"):
        cpu.conv_relu_variances(x, num_relus=1)
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind
