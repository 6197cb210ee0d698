"""KIP: the loss gradient against finite differences, and the semantics of update."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kipd.kernels
from kipd import distill


def _problem(num_support=4, num_target=11, shape=(5, 5, 1), num_classes=2, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    xs = jax.random.normal(keys[0], (num_support, *shape))
    xt = jax.random.normal(keys[1], (num_target, *shape))
    eye = jnp.eye(num_classes) - 1.0 / num_classes
    return (
        xs,
        eye[jnp.arange(num_support) % num_classes],
        xt,
        eye[jnp.arange(num_target) % num_classes],
    )


@pytest.mark.parametrize("name", ["fc1", "convvec2"])
def test_update_follows_the_loss_gradient(ntk, x64, name):
    """One SGD(1) step of ``update`` moves images and labels by minus the gradient of the
    loss of eq. (1), which agrees with central finite differences in float64."""
    kernel = ntk(name)
    xs, ys, xt, yt = (a.astype(jnp.float64) for a in _problem(shape=(4, 4, 1)))
    algo = distill.kip(kernel, optax.sgd(1.0), learn_labels=True, lambda0=1e-3)
    state = algo.init(xs, ys, jax.random.PRNGKey(0))
    new_state, metrics = algo.update(state, xt, yt)
    grads = (xs - new_state.support_images, ys - new_state.support_labels)

    def loss(images, labels):
        return distill.krr_loss(kernel(xt, images), kernel(images, images), labels, yt, 1e-3)[0]

    assert float(metrics["loss"]) == pytest.approx(float(loss(xs, ys)), rel=1e-12)
    directions = (
        jax.random.normal(jax.random.PRNGKey(9), xs.shape, jnp.float64),
        jax.random.normal(jax.random.PRNGKey(10), ys.shape, jnp.float64),
    )
    eps = 1e-4
    for grad, direction, (dx, dy) in zip(
        grads, directions, [(eps * directions[0], 0.0), (0.0, eps * directions[1])], strict=True
    ):
        numeric = (loss(xs + dx, ys + dy) - loss(xs - dx, ys - dy)) / (2 * eps)
        assert float(jnp.vdot(grad, direction)) == pytest.approx(float(numeric), rel=1e-6)


@functools.cache
def _algo(kernel, learn_labels):
    return distill.kip(kernel, optax.adam(0.05), learn_labels=learn_labels)


def test_update_learns_images_and_optionally_labels(ntk):
    xs, ys, xt, yt = _problem()
    for learn_labels in (False, True):
        algo = _algo(ntk("fc1"), learn_labels)
        state = algo.init(xs, ys, jax.random.PRNGKey(0))
        update = jax.jit(algo.update)
        losses = []
        for _ in range(30):
            state, metrics = update(state, xt, yt)
            losses.append(float(metrics["loss"]))
        assert int(state.step) == 30
        assert losses[-1] < 0.5 * losses[0]
        assert not np.allclose(state.support_images, xs)
        assert np.allclose(state.support_labels, ys) != learn_labels
        assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_update_is_deterministic_and_advances_the_key(ntk):
    xs, ys, xt, yt = _problem()
    algo = _algo(ntk("fc1"), True)
    state = algo.init(xs, ys, jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    one, _ = update(state, xt, yt)
    two, _ = update(state, xt, yt)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(two), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(one.key, state.key)


def test_sampling_kip_draws_each_kernel_of_the_family(ntk):
    xs, ys, xt, yt = _problem()
    algo = distill.kip([ntk("fc1"), ntk("fc2"), ntk("fc3")], optax.adam(0.01))
    state = algo.init(xs, ys, jax.random.PRNGKey(3))
    update = jax.jit(algo.update)
    drawn = set()
    for _ in range(12):
        state, metrics = update(state, xt, yt)
        drawn.add(int(metrics["kernel"]))
    assert drawn == {0, 1, 2}


def test_augment_is_applied_to_the_target_batch(ntk):
    xs, ys, xt, yt = _problem()
    kernel = ntk("fc1")
    seen = []

    def augment(key, images):
        seen.append(images.shape)
        return -images

    plain = distill.kip(kernel, optax.adam(0.01))
    flipped = distill.kip(kernel, optax.adam(0.01), augment=augment)
    key = jax.random.PRNGKey(0)
    _, want = plain.update(plain.init(xs, ys, key), -xt, yt)
    _, got = flipped.update(flipped.init(xs, ys, key), xt, yt)
    assert seen == [xt.shape]
    assert float(got["loss"]) == pytest.approx(float(want["loss"]), rel=1e-6)


def test_sample_target_batch_is_a_function_of_key_and_step():
    images = jnp.arange(50.0).reshape(50, 1, 1, 1)
    labels = jnp.arange(50.0)[:, None]
    key = jax.random.PRNGKey(0)
    first, first_labels = distill.sample_target_batch(key, 3, images, labels, 20)
    again, _ = distill.sample_target_batch(key, 3, images, labels, 20)
    other, _ = distill.sample_target_batch(key, 4, images, labels, 20)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len(np.unique(first)) == 20
    np.testing.assert_array_equal(first[:, 0, 0, 0], first_labels[:, 0])


@pytest.mark.parametrize("batch_size", [12, 14, 2])
def test_balanced_target_batch_draws_each_class_alike(batch_size):
    """``batch_size // 4`` rows of each of 4 classes (sizes 5, 6, 7, 30) and one more of
    ``batch_size % 4`` distinct classes, no row twice, as a function of ``(key, step)``."""
    classes = np.repeat(np.arange(4), [5, 6, 7, 30])
    images = jnp.arange(len(classes), dtype=jnp.float32).reshape(-1, 1, 1, 1)
    labels = jax.nn.one_hot(classes, 4)
    key = jax.random.PRNGKey(1)
    sample = jax.jit(
        functools.partial(distill.sample_target_batch, batch_size=batch_size, balanced=True)
    )
    seen = set()
    for step in range(20):
        batch, batch_labels = sample(key, step, images, labels)
        rows = np.asarray(batch[:, 0, 0, 0]).astype(int)
        assert len(np.unique(rows)) == batch_size
        np.testing.assert_array_equal(np.asarray(batch_labels), np.asarray(labels)[rows])
        counts = np.bincount(classes[rows], minlength=4)
        assert counts.min() == batch_size // 4
        assert np.sum(counts > batch_size // 4) == batch_size % 4
        assert counts.max() <= batch_size // 4 + 1
        seen.update(rows.tolist())
    again = sample(key, 3, images, labels)[0]
    np.testing.assert_array_equal(sample(key, 3, images, labels)[0], again)
    # Over 20 steps the draws reach most of the 30-row class, not a fixed few of it.
    assert len(seen & set(range(18, 48))) > 3 * (batch_size // 4 + 1)


def test_kip_needs_a_kernel():
    with pytest.raises(ValueError, match="at least one kernel"):
        distill.kip([], optax.adam(0.01))


def _flat_features(key, images):
    """An exact feature map that ignores its key: the linear kernel's."""
    return images.reshape(images.shape[0], -1)


def test_kip_on_features_takes_kips_step_for_the_same_kernel(x64):
    # The linear kernel as features (Phi = flattened images) and as a kernel matrix: the
    # two routes to the loss and gradient (never forming K_ts vs K_ts) agree in float64.
    def linear(x1, x2):
        return _flat_features(None, x1) @ _flat_features(None, x2).T

    images = jax.random.normal(jax.random.PRNGKey(0), (16, 3, 3, 1), jnp.float64)
    labels = jnp.eye(2)[jnp.arange(16) % 2] - 0.5
    states, metrics = [], []
    for algo in (
        distill.kip(linear, optax.adam(0.01)),
        distill.kip_on_features(_flat_features, optax.adam(0.01)),
    ):
        state = algo.init(images[:4], labels[:4], jax.random.PRNGKey(1))
        for _ in range(3):
            state, step_metrics = jax.jit(algo.update)(state, images[4:], labels[4:])
        states.append(state)
        metrics.append(step_metrics)
    for a, b in zip(jax.tree_util.tree_leaves(states[0]), jax.tree_util.tree_leaves(states[1])):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(metrics[0]["loss"], metrics[1]["loss"], rtol=1e-9)


def test_kip_on_random_features_lowers_the_loss():
    features = kipd.kernels.random_features("fc1", width=64, networks=2)
    images = jax.random.normal(jax.random.PRNGKey(0), (40, 4, 4, 1))
    labels = jnp.eye(2)[(images.mean(axis=(1, 2, 3)) > 0).astype(int)] - 0.5
    algo = distill.kip_on_features(features, optax.adam(0.05))
    state = algo.init(images[:4], labels[:4], jax.random.PRNGKey(1))
    update = jax.jit(algo.update)
    losses = []
    for _ in range(30):
        state, step_metrics = update(state, images[4:], labels[4:])
        losses.append(float(step_metrics["loss"]))
    # Fresh networks every step make single losses noisy: compare the first and last fives.
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
