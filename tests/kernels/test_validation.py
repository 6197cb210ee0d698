"""Bad input to the kernels API fails with a message that names the problem and the fix."""

import jax.numpy as jnp
import pytest

import kipd.kernels


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="resnet"), "unknown architecture 'resnet'"),
        (dict(name="fc"), "unknown architecture"),
        (dict(name="convvec0"), "at least one conv layer"),
        (dict(name="fc2", depth=2), "depth= applies to 'convnet' only"),
        (dict(name="convnet", parameterization="standard"), "parameterization='ntk'"),
        (dict(name="convnet", pairs_per_block=0), "pairs_per_block must be >= 1"),
    ],
)
def test_make_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kipd.kernels.make(**kwargs)


def test_kernel_rejects_bad_inputs():
    kernel = kipd.kernels.make("fc1")
    with pytest.raises(ValueError, match="NHWC"):
        kernel(jnp.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="differ in shape"):
        kernel(jnp.ones((2, 8, 8, 1)), jnp.ones((2, 6, 6, 1)))
    with pytest.raises(ValueError, match="get must be"):
        kernel(jnp.ones((2, 8, 8, 1)), get="gp")


def test_too_much_pooling_for_the_image_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        kipd.kernels.make("convnet", depth=4)(jnp.ones((1, 8, 8, 1)))
