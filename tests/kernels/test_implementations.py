"""The full-resolution stage's implementations give the same kernel, and ``auto`` resolves
per backend (docs/kernels.md, "Engine")."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kipd.kernels
from kipd.kernels import _make
from kipd.kernels._stages import cpu_build

SHAPE = (6, 6, 2)


def _images(seed, n):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, *SHAPE))


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def kernels():
    return {
        name: kipd.kernels.make("convnet", depth=1, implementation=name)
        for name in ("xla", "cpu", "pallas")
    }


@pytest.mark.parametrize("name", ["cpu", "pallas"])
def test_fused_stages_equal_the_xla_kernel_with_exact_diagonal(kernels, name):
    x1, x2 = _images(0, 3), _images(1, 2)
    for x_b in (x2, None):
        ours = kernels[name](x1, x_b, get=("nngp", "ntk"))
        reference = kernels["xla"](x1, x_b, get=("nngp", "ntk"))
        for a, b in zip(ours, reference):
            assert _relative(a, b) <= 1e-5
    # Identical images: both kernels keep the exact correlation 1 of a pixel with itself,
    # so their K(x, x) diagonals agree to float32 rounding, not to ~1e-4.
    diagonal = np.diag(np.asarray(kernels[name](x1)))
    np.testing.assert_allclose(diagonal, np.diag(np.asarray(kernels["xla"](x1))), rtol=2e-6)
    grad = jax.grad(lambda a: jnp.sum(jnp.cos(kernels[name](a, x2))))(x1)
    reference_grad = jax.grad(lambda a: jnp.sum(jnp.cos(kernels["xla"](a, x2))))(x1)
    assert _relative(grad, reference_grad) <= 1e-5


def test_the_stages_after_the_first_pooling_run_in_cpp_too():
    """A ConvNet of depth 2 (its second [conv, ReLU] group and pooling on a band): the C++
    kernel runs them (the custom call is in the program), and the kernel, its exact
    diagonal and its gradient equal the XLA layer maps'."""
    shape = (8, 8, 2)
    x1, x2 = (
        jax.random.normal(jax.random.PRNGKey(seed), (n, *shape)) for seed, n in ((3, 3), (4, 2))
    )
    ours, reference = (
        kipd.kernels.make("convnet", depth=2, implementation=name) for name in ("cpu", "xla")
    )
    assert "kipd_cpu_band_on_band_forward" in str(jax.make_jaxpr(ours)(x1, x2))
    for x_b in (x2, None):
        both = ("nngp", "ntk")
        for a, b in zip(ours(x1, x_b, get=both), reference(x1, x_b, get=both)):
            assert _relative(a, b) <= 1e-5
    np.testing.assert_allclose(
        np.diag(np.asarray(ours(x1))), np.diag(np.asarray(reference(x1))), rtol=2e-6
    )
    grads = [jax.grad(lambda a, k=k: jnp.sum(jnp.cos(k(a, x2))))(x1) for k in (ours, reference)]
    assert _relative(*grads) <= 1e-5


def test_auto_is_the_cpu_kernel_on_a_cpu():
    assert cpu_build.available(), cpu_build.build_error()
    key = ("convnet", math.sqrt(2), 0.1, None)
    assert _make.auto_implementation(key, (32, 32, 3), "cpu") == "cpu"


def test_the_calibration_runs_while_a_kernel_is_traced():
    # On a GPU "auto" times the candidates when the kernel is first traced, inside jit.
    chosen = []

    @jax.jit
    def traced(x):
        chosen.append(_make._calibrate(("convnet", math.sqrt(2), 0.1, 1), SHAPE, ("xla", "cpu")))
        return x * 2

    traced(jnp.ones(3))
    assert chosen[0] in ("xla", "cpu")


def test_unknown_implementation_and_missing_compiler_are_named(monkeypatch):
    with pytest.raises(ValueError, match="implementation must be one of"):
        kipd.kernels.make("convnet", implementation="cuda")
    monkeypatch.setattr(cpu_build, "available", lambda: False)
    monkeypatch.setattr(cpu_build, "build_error", lambda: "g++: not found")
    with pytest.raises(RuntimeError, match="g\\+\\+: not found.*implementation='xla'"):
        kipd.kernels.make("convnet", depth=1, implementation="cpu")(_images(2, 1))
