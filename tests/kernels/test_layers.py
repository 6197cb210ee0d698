"""The finite-network side of the layer descriptions (init/apply) and the band plan."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import kipd.kernels


@pytest.mark.parametrize(
    "name, expected_band",
    [("fc3", (0, 0)), ("convvec8", (0, 0)), ("convnet", (7, 7))],
)
def test_band_each_architecture_needs(name, expected_band):
    # Flatten needs offset 0; each 2x2 pool widens the band to 2R + 1.
    assert kipd.kernels.architecture(name).band(None) == expected_band


@pytest.mark.parametrize("name", ["fc2", "convvec2", "convnet"])
def test_finite_network_shapes(name):
    network = kipd.kernels.architecture(name, width=16, parameterization="standard")
    out_shape, params = network.init(jax.random.PRNGKey(0), (16, 16, 3))
    assert out_shape == (1,)
    outputs = network.apply(params, jnp.ones((5, 16, 16, 3)))
    assert outputs.shape == (5, 1) and np.isfinite(outputs).all()


def test_wide_network_nngp_approaches_the_kernel():
    # Independent check of both meanings of one description: the output covariance of a
    # wide random ConvVec over initializations is the NNGP kernel.
    network = kipd.kernels.architecture("convvec1", width=512)
    images = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 6, 2))

    def outputs(key):
        _, params = network.init(key, images.shape[1:])
        return network.apply(params, images)[:, 0]

    samples = jax.vmap(outputs)(jax.random.split(jax.random.PRNGKey(2), 400))
    empirical = np.asarray(samples.T @ samples / samples.shape[0])
    exact = np.asarray(kipd.kernels.make("convvec1")(images, get="nngp"))
    assert np.abs(empirical - exact).max() <= 0.15 * np.abs(exact).max()


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize(
    "make_layer, in_shape",
    [
        (lambda p: kipd.kernels.dense(3, W_std=1.5, b_std=0.2, parameterization=p), (4,)),
        (lambda p: kipd.kernels.conv(3, W_std=1.5, b_std=0.2, parameterization=p), (5, 4, 2)),
        (lambda p: kipd.kernels.conv(2, (1, 3), parameterization=p), (3, 5, 2)),
    ],
    ids=["dense", "conv3x3", "conv1x3"],
)
def test_example_gradients_are_each_inputs_parameter_gradient(
    make_layer, in_shape, parameterization
):
    # Against autodiff of one input at a time, flattened in ravel_pytree's order.
    layer = make_layer(parameterization)
    rng = np.random.default_rng(4)
    inputs = jnp.asarray(rng.standard_normal((3, *in_shape)), jnp.float32)
    _, params = layer.init(jax.random.PRNGKey(5), in_shape)
    cotangents = jnp.asarray(rng.standard_normal(layer.apply(params, inputs).shape), jnp.float32)

    def gradient(i):
        one = lambda p: jnp.sum(layer.apply(p, inputs[i : i + 1]) * cotangents[i])  # noqa: E731
        return jax.flatten_util.ravel_pytree(jax.grad(one)(params))[0]

    expected = np.stack([gradient(i) for i in range(len(inputs))])
    actual = layer.example_gradients(params, inputs, cotangents)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_layers_without_parameters_have_no_example_gradients():
    for layer in (kipd.kernels.relu(), kipd.kernels.avg_pool(), kipd.kernels.flatten()):
        assert layer.example_gradients is None
