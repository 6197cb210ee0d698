"""Random features against the exact NNGP and NTK: unbiased where one nonlinearity separates
input and readout, converging as 1 / sqrt(M * width) for the ConvNet; the NTK's features are
the networks' parameter gradients."""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import kipd.kernels
from kipd.kernels import feature_count, random_features

IMAGES = np.random.default_rng(0).standard_normal((5, 6, 6, 1)).astype(np.float32)


@functools.cache
def _gram(name, width, networks, depth=None, get="nngp"):
    """``gram(key)``: the feature kernel of IMAGES, jitted once per feature map."""
    features = random_features(name, width=width, networks=networks, depth=depth, get=get)
    return jax.jit(lambda key: (lambda phi: phi @ phi.T)(features(key, IMAGES)))


def _empirical(name, width, networks, key, depth=None, get="nngp"):
    return np.asarray(_gram(name, width, networks, depth, get)(key), np.float64)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
@pytest.mark.parametrize("name", ["fc1", "convvec1"])
def test_one_hidden_layer_features_equal_the_kernel_in_expectation(name, get):
    # 300 independent networks of width 8: each gives an unbiased estimate of every
    # entry; their mean is within 4 standard errors of the exact kernel (a false alarm
    # has probability ~6e-5 per entry).
    exact = np.asarray(kipd.kernels.make(name)(IMAGES, get=get), np.float64)
    keys = jax.random.split(jax.random.PRNGKey(1), 300)
    samples = np.stack([_empirical(name, 8, 1, key, get=get) for key in keys])
    error = np.abs(samples.mean(0) - exact)
    standard_error = samples.std(0, ddof=1) / np.sqrt(len(samples))
    assert np.all(error <= 4 * standard_error + 1e-6), (error / standard_error).max()


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_convnet_features_converge_as_one_over_sqrt_of_width_times_networks(get):
    # 256x the features (width 8 x 2 networks -> 128 x 32): the relative error should
    # shrink ~16x; measured over three sets of 6 seeds 19-24x for the NNGP (errors
    # 0.30-0.38 -> 0.014-0.017) and 18-22x for the NTK (0.26-0.33 -> 0.014-0.018). The
    # bounds leave room for the sampling noise of 6 seeds.
    exact = np.asarray(kipd.kernels.make("convnet", depth=1)(IMAGES, get=get), np.float64)

    def mean_error(width, networks):
        errors = [
            np.linalg.norm(_empirical("convnet", width, networks, key, 1, get) - exact)
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


def test_ntk_features_are_the_networks_parameter_gradients():
    # phi(x) . phi(x') is the mean over the M networks of grad f(x) . grad f(x'), where f
    # is the same description's finite network (architecture) drawn by the same key.
    width, networks, key = 4, 2, jax.random.PRNGKey(6)
    features = random_features("convnet", width=width, networks=networks, depth=1, get="ntk")
    network = kipd.kernels.architecture("convnet", width=width, depth=1)

    def jacobian(network_key):
        _, params = network.init(network_key, IMAGES.shape[1:])
        one = lambda p, x: network.apply(p, x[None])[0, 0]  # noqa: E731
        rows = [jax.flatten_util.ravel_pytree(jax.grad(one)(params, x))[0] for x in IMAGES]
        return np.stack(rows).astype(np.float64)

    expected = np.mean(
        [(lambda j: j @ j.T)(jacobian(k)) for k in jax.random.split(key, networks)], axis=0
    )
    phi = np.asarray(features(key, IMAGES), np.float64)
    np.testing.assert_allclose(phi @ phi.T, expected, rtol=2e-5)
    count = feature_count("convnet", (6, 6, 1), width=width, networks=networks, depth=1, get="ntk")
    # The parameters of one network: conv 1->4 and 4->4 (3x3, with biases), readout 36 + 1.
    assert phi.shape == (5, count) and count == networks * (40 + 148 + 37)


@pytest.mark.parametrize("bad", [dict(width=0, networks=1), dict(width=8, networks=0)])
def test_bad_sizes_name_the_fix(bad):
    with pytest.raises(ValueError, match="--features"):
        random_features("fc1", **bad)


def test_an_unknown_kernel_names_the_fix():
    with pytest.raises(ValueError, match="--feature-kernel ntk"):
        random_features("fc1", width=8, networks=1, get="ntk2")
