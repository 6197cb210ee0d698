"""The field's standard evaluation protocol for distilled sets (DC-bench, DD-Ranking).

Every method is compared by the test accuracy of one network trained on its set under one
shared recipe, against a random class-balanced subset of the same size under the same
recipe:

- ConvNet-3 (ConvNet-4 for 64x64 images): ``depth x [3x3 conv (width 128), instance norm,
  ReLU, 2x2 average pooling]``, then a linear readout;
- DSA augmentation of every training batch (``kipd.data.dsa``);
- SGD with momentum 0.9, weight decay 5e-4, learning rate 0.01 divided by 10 halfway,
  1000 epochs of batches of up to 256 images;
- cross-entropy on the hard labels (``argmax``), or, as an option, MSE on the learned
  labels;
- mean +- std of the test accuracy over several network seeds (initialization, batch
  order and augmentation).

What differs from DC-bench's PyTorch code: kipd's layers initialize weights with
``W_std = sqrt(2)`` (He) normal and biases ``N(0, 0.1^2)`` instead of PyTorch's default
uniform, and the instance norm's scale and shift start at 1 and 0 as in PyTorch. The
appendix-A protocol of the paper (``kipd transfer`` without ``--protocol``) stays the
default: it tunes the learning rate and L2 on validation data, this one does not tune.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from kipd import compute, data
from kipd.kernels import Layer, avg_pool, conv, dense, flatten, normalization, relu, serial
from kipd.transfer._train import accuracies, objective, train_targets

WIDTH = 128
EPOCHS = 1000
LEARNING_RATE = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
BATCH_SIZE = 256
NETWORK_SEEDS = 5


def standard_network(image_shape: Sequence[int], num_classes: int, width: int = WIDTH) -> Layer:
    """ConvNet-3 of the standard protocol (ConvNet-4 for images of side >= 64).

    Example:
      >>> net = standard_network((28, 28, 1), 10)
      >>> net.init(jax.random.PRNGKey(0), (28, 28, 1))[0]
      (10,)
    """
    depth = 4 if min(image_shape[:2]) >= 64 else 3
    block = [
        conv(width, parameterization="standard"),
        normalization("instance"),
        relu(),
        avg_pool(),
    ]
    return serial(*(block * depth), flatten(), dense(num_classes, parameterization="standard"))


class StandardResult(NamedTuple):
    """One set under the standard protocol.

    Attributes:
      test_accuracy: mean test accuracy over the network seeds.
      test_accuracy_std: their standard deviation (``np.std``).
      accuracies: the test accuracy of each network seed, in seed order.
    """

    test_accuracy: float
    test_accuracy_std: float
    accuracies: tuple[float, ...]


def _schedule(steps: int) -> optax.Schedule:
    return optax.piecewise_constant_schedule(LEARNING_RATE, {steps // 2: 0.1})


def _trainer(
    net: Layer, n: int, steps: int, steps_per_epoch: int, loss: str
) -> tuple[Callable, optax.GradientTransformation]:
    """The compiled training step ``(params, opt_state, key, x, y, step) -> (params,
    opt_state)`` and its optimizer; each epoch visits the set once in a random order, in
    batches of up to :data:`BATCH_SIZE`, and every batch is augmented by DSA."""
    opt = optax.sgd(_schedule(steps), momentum=MOMENTUM)
    batch = min(n, BATCH_SIZE)

    @jax.jit
    def step(params, opt_state, key, x, y, index):
        epoch, position = index // steps_per_epoch, index % steps_per_epoch
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        chosen = jax.lax.dynamic_slice_in_dim(
            jnp.concatenate([order, order]), position * batch, batch
        )
        images = data.dsa(jax.random.fold_in(jax.random.fold_in(key, 1 << 20), index), x[chosen])
        grads, _ = jax.grad(
            lambda p: objective(net.apply, p, images, y[chosen], WEIGHT_DECAY, loss), has_aux=True
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step, opt


def standard_protocol(
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    *,
    network_seeds: int = NETWORK_SEEDS,
    soft_labels: bool = False,
    epochs: int = EPOCHS,
    width: int = WIDTH,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    budget_seconds: float | None = None,
) -> dict[str, StandardResult]:
    """Trains the standard ConvNet on each set with each network seed; tests each network.

    Args:
      sets: ``{name: (images (n, H, W, C), labels (n, classes))}``, in the space the network
        is fed (a distilled set and, e.g., a random natural subset of the same size).
      test_images: ``(t, H, W, C)`` test images in the same space.
      test_labels: ``(t,)`` class ids.
      num_classes: C.
      network_seeds: networks per set (seeds 0, 1, ...).
      soft_labels: MSE on the labels as given (learned labels) instead of cross-entropy on
        their argmax.
      epochs: passes over each set (1000 in the protocol).
      width: channels of every conv.
      progress: a progress bar over the networks.
      log: where the ``estimate:`` line goes (timed from a few compiled steps);
        ``None`` measures nothing.
      budget_seconds: stop with :class:`kipd.compute.OverBudgetError` before training if
        estimated to take longer.

    Returns:
      ``{name: StandardResult}``.

    Raises:
      ValueError: bad options or shapes.
    """
    if not (isinstance(network_seeds, int) and network_seeds >= 1):
        raise ValueError(
            f"network seeds must be an integer >= 1, got {network_seeds!r}: pass "
            "e.g. --network-seeds 5"
        )
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    image_shape = tuple(np.shape(test_images)[1:])
    net = standard_network(image_shape, num_classes, width)
    loss = "mse" if soft_labels else "xent"
    test_images, test_labels = np.asarray(test_images, np.float32), np.asarray(test_labels)
    prepared, trainers = {}, {}
    for name, (images, labels) in sets.items():
        images, labels = np.asarray(images, np.float32), np.asarray(labels)
        if images.shape[1:] != image_shape or labels.shape != (len(images), num_classes):
            raise ValueError(
                f"set {name!r}: images {images.shape} and labels {labels.shape} do not fit "
                f"test images {image_shape} with {num_classes} classes"
            )
        n = len(images)
        steps_per_epoch = math.ceil(n / BATCH_SIZE)
        steps = epochs * steps_per_epoch
        if (n, steps) not in trainers:  # sets of one size share one compiled step
            trainers[n, steps] = _trainer(net, n, steps, steps_per_epoch, loss)
        targets = jnp.asarray(train_targets(labels, num_classes, loss))
        prepared[name] = (jnp.asarray(images), targets, trainers[n, steps], steps)
    if log is not None or budget_seconds is not None:
        estimate = _estimate(net, prepared, test_images, test_labels, network_seeds, image_shape)
        estimate.announce(log, budget_seconds, "fewer --network-seeds, or fewer --epochs")
    results = {}
    bar = tqdm.tqdm(
        total=len(sets) * network_seeds, desc="networks", disable=not progress, leave=False
    )
    for name, (x, y, (step, opt), steps) in prepared.items():
        scores = []
        for seed in range(network_seeds):
            init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
            _, params = net.init(init_key, image_shape)
            opt_state = opt.init(params)
            for index in range(steps):
                params, opt_state = step(params, opt_state, train_key, x, y, index)
            (score,) = accuracies(net.apply, [params], test_images, test_labels)
            scores.append(float(score))
            bar.update(1)
        results[name] = StandardResult(float(np.mean(scores)), float(np.std(scores)), tuple(scores))
    bar.close()
    return results


def _estimate(net, prepared, test_images, test_labels, seeds, image_shape) -> compute.Estimate:
    """The protocol's cost from two timed steps of each set (compiled first; the grid then
    reuses the compiled step) and one test pass."""

    def timed(fn: Callable[[], Any]) -> float:
        jax.block_until_ready(fn())
        started = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - started

    _, params = net.init(jax.random.PRNGKey(0), image_shape)
    training, steps_total = 0.0, 0
    for x, y, (step, opt), steps in prepared.values():
        opt_state = opt.init(params)
        seconds = timed(lambda: step(params, opt_state, jax.random.PRNGKey(0), x, y, 0))
        training += seeds * steps * seconds
        steps_total += seeds * steps
    test = timed(lambda: accuracies(net.apply, [params], test_images, test_labels))
    networks = seeds * len(prepared)
    return compute.Estimate(
        what=f"standard protocol: {networks} ConvNets ({len(prepared)} set(s) x {seeds} seeds), "
        f"each tested on {len(test_labels)} images",
        parts={"training": training, "testing": networks * test},
        entries=steps_total,
        unit="SGD steps",
    )
