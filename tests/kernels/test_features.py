"""Random features against the exact NNGP: unbiased where one nonlinearity separates input
and readout, converging as 1 / sqrt(M * width) for the ConvNet."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kipd.kernels
from kipd.kernels import feature_count, random_features

IMAGES = np.random.default_rng(0).standard_normal((5, 6, 6, 1)).astype(np.float32)


@functools.cache
def _gram(name, width, networks, depth=None):
    """``gram(key)``: the feature kernel of IMAGES, jitted once per feature map."""
    features = random_features(name, width=width, networks=networks, depth=depth)
    return jax.jit(lambda key: (lambda phi: phi @ phi.T)(features(key, IMAGES)))


def _empirical(name, width, networks, key, depth=None):
    return np.asarray(_gram(name, width, networks, depth)(key), np.float64)


@pytest.mark.parametrize("name", ["fc1", "convvec1"])
def test_one_hidden_layer_features_equal_the_nngp_in_expectation(name):
    # 300 independent networks of width 8: each gives an unbiased estimate of every
    # entry; their mean is within 4 standard errors of the exact NNGP (a false alarm
    # has probability ~6e-5 per entry).
    exact = np.asarray(kipd.kernels.make(name)(IMAGES, get="nngp"), np.float64)
    samples = np.stack(
        [_empirical(name, 8, 1, key) for key in jax.random.split(jax.random.PRNGKey(1), 300)]
    )
    error = np.abs(samples.mean(0) - exact)
    standard_error = samples.std(0, ddof=1) / np.sqrt(len(samples))
    assert np.all(error <= 4 * standard_error + 1e-6), (error / standard_error).max()


def test_convnet_features_converge_as_one_over_sqrt_of_width_times_networks():
    # 256x the features (width 8 x 2 networks -> 128 x 32): the relative error should
    # shrink ~16x; measured 19-24x over three sets of 6 seeds, with errors 0.30-0.38 ->
    # 0.014-0.017. The bounds leave room for the sampling noise of 6 seeds.
    exact = np.asarray(kipd.kernels.make("convnet", depth=1)(IMAGES, get="nngp"), np.float64)

    def mean_error(width, networks):
        errors = [
            np.linalg.norm(_empirical("convnet", width, networks, key, depth=1) - exact)
            / np.linalg.norm(exact)
            for key in jax.random.split(jax.random.PRNGKey(2), 6)
        ]
        return float(np.mean(errors))

    small, large = mean_error(8, 2), mean_error(128, 32)
    assert 8.0 <= small / large <= 40.0, (small, large)
    assert large <= 0.03, large


def test_features_are_jittable_differentiable_and_shaped():
    features = random_features("convnet", width=4, networks=3, depth=1)
    key = jax.random.PRNGKey(0)
    phi = jax.jit(features)(key, IMAGES)
    assert phi.shape == (5, feature_count("convnet", (6, 6, 1), width=4, networks=3, depth=1))
    assert phi.shape == (5, 3 * 4 * 3 * 3 + 1)  # 3 networks x 4 channels x 3x3 after pooling
    # Same key, same networks (eager and jitted programs round differently: float32 ulps).
    np.testing.assert_allclose(phi, features(key, IMAGES), rtol=1e-6, atol=1e-7)
    assert not np.allclose(phi, features(jax.random.PRNGKey(1), IMAGES), rtol=1e-2)
    # The gradient in the images against a central difference (float64).
    with jax.enable_x64(True):
        x = jnp.asarray(IMAGES, jnp.float64)
        direction = jnp.asarray(np.random.default_rng(3).standard_normal(x.shape))
        loss = lambda images: jnp.sum(jnp.sin(features(key, images)))  # noqa: E731
        analytic = jnp.vdot(jax.grad(loss)(x), direction)
        step = 1e-5
        numeric = (loss(x + step * direction) - loss(x - step * direction)) / (2 * step)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(width=0, networks=1), dict(width=8, networks=0)])
def test_bad_sizes_name_the_fix(bad):
    with pytest.raises(ValueError, match="--features"):
        random_features("fc1", **bad)
