"""Random features: the NNGP or NTK of an architecture from a few random finite networks.

The same layer description that gives the exact kernel (:func:`architecture`) gives finite
networks of any width. A network's readout is ``W_std / sqrt(n) w . h(x) + b_std b`` on its
``n`` penultimate activations ``h(x)``; over the readout's Gaussian weights,
``E[f(x) f(x')] = W_std^2 h(x) . h(x') / n + b_std^2``. So the features
``phi(x) = [W_std h_1(x) / sqrt(n), ..., W_std h_M(x) / sqrt(n)] / sqrt(M)`` of ``M``
networks drawn independently, with one constant feature ``b_std``, have
``phi(x) . phi(x')`` = the mean over the networks of that empirical NNGP: the readout's
expectation is taken exactly, the hidden layers' by sampling. It is the exact NNGP in
expectation where one nonlinearity separates the input from the readout (``fc1``,
``convvec1``) and converges to it as ``1 / sqrt(M * width)`` otherwise (finite-width
corrections of deeper networks are ``O(1 / width)``); ``tests/kernels/test_features.py``
measures both. This is RFAD's feature map (Loo et al., NeurIPS 2022).

The NTK's features (``get="ntk"``) are each network's parameter gradients: a network's
scalar output ``f(x)`` (NTK parameterization, readout of one unit) has the empirical NTK
``grad f(x) . grad f(x')``, which converges to the exact NTK as the width grows (Jacot et
al. 2018) and, like the NNGP's, is unbiased where one nonlinearity separates input and
readout. The readout's own gradients are the NNGP features above, so the NTK's features
contain them. Rows are per-image gradients: one backward pass gives the cotangent at every
layer for all images at once (they are independent), and each layer turns its input and
cotangent into per-image gradients (``Layer.example_gradients``). ``p`` is ``M`` times the
parameter count of one network (a ConvNet of width 32: 28,353 per network at 28x28x1),
so KRR on them goes through the ``n x n`` side (:func:`kipd.distill.krr_predict_features`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from kipd.kernels._architectures import _layers
from kipd.kernels._layers import Layer, serial
from kipd.kernels._make import KERNEL_OUTPUTS, _check_images

FeatureFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``features(key, images (n, H, W, C)) -> (n, p)``: a random feature map; ``key`` draws
its networks (:func:`random_features`)."""


def feature_count(
    name: str,
    image_shape: tuple[int, ...],
    *,
    width: int,
    networks: int,
    get: str = "nngp",
    depth: int | None = None,
) -> int:
    """``p``, the features per image of :func:`random_features` for ``image_shape``
    ``(H, W, C)``: for the NNGP ``networks`` times the penultimate activations of one
    network, plus the constant (bias) feature; for the NTK ``networks`` times the
    parameters of one network (from shapes alone: nothing is computed)."""
    features = random_features(name, width=width, networks=networks, get=get, depth=depth)
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return int(jax.eval_shape(features, jax.random.PRNGKey(0), images).shape[1])


def random_features(
    name: str,
    *,
    width: int,
    networks: int,
    get: str = "nngp",
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    depth: int | None = None,
) -> FeatureFn:
    """A random feature map whose inner products estimate the NNGP or NTK of ``name``.

    Args:
      name: ``"fc<n>"``, ``"convvec<n>"`` or ``"convnet"`` (see :func:`architecture`).
      width: channels (conv) or units (dense) of each hidden layer of the finite networks.
      networks: ``M``, independent networks whose features are concatenated.
      get: the kernel estimated: ``"nngp"`` (the readout's inputs, RFAD's map) or
        ``"ntk"`` (every parameter's gradient; several times the cost per image, and
        ``p`` is ``M`` times a network's parameter count).
      W_std, b_std: weight and bias standard deviations (those of the exact kernel).
      depth: [Conv, ReLU, AvgPool] groups of ``convnet`` (default 3).

    Returns:
      ``features(key, images) -> (n, p)``: ``images`` of shape ``(n, H, W, C)``; ``key``
      draws the ``M`` networks, so the same key gives the same networks for every batch
      of images (support and targets of one KIP step share one). ``p`` is
      :func:`feature_count`. Pure, jit-able and differentiable in ``images``;
      ``features(key, x1) @ features(key, x2).T`` estimates ``make(name)(x1, x2,
      get=get)``.

    Raises:
      ValueError: an unknown architecture or ``get``, ``width`` or ``networks`` < 1.

    Example:
      >>> features = random_features("fc1", width=16, networks=2)
      >>> features(jax.random.PRNGKey(0), jnp.ones((3, 4, 4, 1))).shape
      (3, 33)
    """
    for value, what in ((width, "width"), (networks, "networks")):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(
                f"{what} must be an integer >= 1, got {value!r}: e.g. --features 256:8"
            )
    if get not in KERNEL_OUTPUTS:
        raise ValueError(
            f"random features estimate the kernel 'nngp' or 'ntk', got {get!r}: pass e.g. "
            "--feature-kernel ntk"
        )
    layers = _layers(name, width=width, W_std=W_std, b_std=b_std, depth=depth)
    body = serial(*layers[:-1])

    def features(key: jax.Array, images: jax.Array) -> jax.Array:
        _check_images(images, "images")

        def one_network(network_key):
            if get == "ntk":
                return _parameter_gradients(layers, network_key, images)
            _, params = body.init(network_key, images.shape[1:])
            hidden = body.apply(params, images)
            return hidden * (W_std / math.sqrt(hidden.shape[-1]))

        # The networks unrolled, not looped: on the CPU the backward pass of a loop over
        # networks (lax.map / scan, or vmap's batched convolutions) took 12-15x as long as
        # the same networks unrolled (ConvNet width 32 x 4 networks, 100 images at 28x28:
        # 4.6 s against 0.31 s); compile time grows with M instead.
        per_network = [one_network(k) for k in jax.random.split(key, networks)]
        flat = jnp.concatenate(per_network, axis=1) / math.sqrt(networks)
        if get == "ntk":  # each network's readout bias is among its parameters
            return flat
        bias = jnp.full((images.shape[0], 1), b_std, flat.dtype)
        return jnp.concatenate([flat, bias], axis=1)

    return features


def _parameter_gradients(layers: list[Layer], key: jax.Array, images: jax.Array) -> jax.Array:
    """``(n, P)``: per image, the gradient of the scalar output of the network ``layers``
    (drawn by ``key``) with respect to its ``P`` parameters."""
    network = serial(*layers)
    _, params = network.init(key, images.shape[1:])
    learned = [i for i, layer in enumerate(layers) if layer.example_gradients is not None]
    for i, layer in enumerate(layers):
        if i not in learned and jax.tree_util.tree_leaves(params[i]):
            raise ValueError(f"layer {i} has parameters but no per-image gradients")

    def forward(shifts):
        # ``shifts`` (zeros) are added to each learned layer's output: the gradient of the
        # summed outputs with respect to them is each image's cotangent there.
        x, inputs, outputs = images, [], []
        for i, (layer, layer_params) in enumerate(zip(layers, params)):
            y = layer.apply(layer_params, x)
            if i in learned:
                inputs.append(x)
                y = y if shifts is None else y + shifts[len(outputs)]
                outputs.append(y)
            x = y
        return x, (inputs, outputs)

    shapes = jax.eval_shape(lambda: forward(None)[1][1])
    zeros = [jnp.zeros(shape.shape, shape.dtype) for shape in shapes]
    output, pullback, (inputs, _) = jax.vjp(forward, zeros, has_aux=True)
    (cotangents,) = pullback(jnp.ones_like(output))
    rows = [
        layers[i].example_gradients(params[i], x, cotangent)  # type: ignore[misc]
        for i, x, cotangent in zip(learned, inputs, cotangents)
    ]
    return jnp.concatenate(rows, axis=1)
