"""KIP: the loss gradient against finite differences, and the semantics of update."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kipd.kernels
from kipd import distill
from kipd.distill import _kip
from kipd.distill._krr import krr_platt_loss_features  # not (yet) a public name
from kipd.runs import _checkpoint


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


def _fc1_features():
    return kipd.kernels.random_features("fc1", width=16, networks=2)


def _doctest_problem():
    """The docstring example's data: 2 support images, 10 targets of 4x4x1, 2 classes."""
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 4, 4, 1))
    y = jnp.eye(2)[jnp.arange(12) % 2] - 0.5
    return x[:2], y[:2], x[2:], y[2:]


def test_kip_on_features_mse_is_unchanged():
    # Pinned from kip_on_features before the loss and resample_networks options (float32,
    # CPU): the default stays eq. (1) with fresh networks, and its state the same leaves.
    xs, ys, xt, yt = _doctest_problem()
    runs = []
    for options in ({}, {"loss": "mse", "resample_networks": True}):
        algo = distill.kip_on_features(_fc1_features(), optax.adam(0.01), **options)
        state = algo.init(xs, ys, jax.random.PRNGKey(1))
        losses = []
        for _ in range(3):
            state, metrics = jax.jit(algo.update)(state, xt, yt)
            losses.append(float(metrics["loss"]))
        runs.append((state, losses))
    (state, losses), (explicit, explicit_losses) = runs
    assert losses == explicit_losses
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(explicit)):
        np.testing.assert_array_equal(a, b)
    assert list(_checkpoint.named_leaves(state)) == [
        "support_images",
        "support_labels",
        "opt_state/0/count",
        "opt_state/0/mu/images",
        "opt_state/0/mu/labels",
        "opt_state/0/nu/images",
        "opt_state/0/nu/labels",
        "step",
        "key",
    ]
    assert state.log_scale is None and state.network_key is None
    np.testing.assert_allclose(
        losses, [0.1428402066230774, 0.13719619810581207, 0.12002778053283691], rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(state.support_images).ravel()[:3],
        [1.650984764099121, 1.9968575239181519, -0.40793710947036743],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        state.support_labels,
        [[0.47317132353782654, -0.47317132353782654], [-0.4743795692920685, 0.4743795692920685]],
        rtol=1e-5,
    )


@pytest.mark.parametrize("resample_networks", [True, False])
def test_platt_update_follows_the_loss_gradient(x64, resample_networks):
    """One SGD(1) step of ``loss="platt"`` moves images, labels and ``log_scale`` by minus
    the gradient of RFAD's loss, which agrees with central finite differences in float64."""
    features = _fc1_features()
    xs, ys, xt, yt = (a.astype(jnp.float64) for a in _doctest_problem())
    ys = ys + 0.1 * jax.random.normal(jax.random.PRNGKey(4), ys.shape, jnp.float64)
    algo = distill.kip_on_features(
        features, optax.sgd(1.0), lambda0=1e-3, loss="platt", resample_networks=resample_networks
    )
    state = algo.init(xs, ys, jax.random.PRNGKey(1))
    # Moving off RFAD's initial scale 1: the gradient in log_scale at another point.
    state = state._replace(log_scale=jnp.asarray(0.4, jnp.float64))
    assert state.log_scale.dtype == jnp.float64
    new_state, metrics = jax.jit(algo.update)(state, xt, yt)
    grads = (
        xs - new_state.support_images,
        ys - new_state.support_labels,
        state.log_scale - new_state.log_scale,
    )
    # The networks of the first step: the init key's, either way.
    network_key = jax.random.fold_in(jax.random.PRNGKey(1), _kip._NETWORK_STREAM)
    if not resample_networks:
        np.testing.assert_array_equal(state.network_key, network_key)

    @jax.jit
    def loss(images, labels, log_scale):
        phi_s, phi_t = features(network_key, images), features(network_key, xt)
        return krr_platt_loss_features(phi_t, phi_s, labels, yt, log_scale, 1e-3)[0]

    point = (xs, ys, state.log_scale)
    assert float(metrics["loss"]) == pytest.approx(float(loss(*point)), rel=1e-12)
    eps = 1e-5
    for i, grad in enumerate(grads):
        direction = jax.random.normal(jax.random.PRNGKey(20 + i), np.shape(grad), jnp.float64)
        plus = [p + eps * direction if j == i else p for j, p in enumerate(point)]
        minus = [p - eps * direction if j == i else p for j, p in enumerate(point)]
        numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
        assert float(jnp.vdot(grad, direction)) == pytest.approx(float(numeric), rel=1e-6)


@pytest.mark.parametrize("resample_networks", [True, False])
def test_platt_state_survives_a_checkpoint_and_resumes_bit_for_bit(tmp_path, resample_networks):
    xs, ys, xt, yt = _doctest_problem()
    algo = distill.kip_on_features(
        _fc1_features(),
        optax.adam(0.05),
        loss="platt",
        resample_networks=resample_networks,
    )
    update = jax.jit(algo.update)
    state = algo.init(xs, ys, jax.random.PRNGKey(1))
    for _ in range(2):
        state, metrics = update(state, xt, yt)
    assert float(state.log_scale) != 0.0  # learned: it moved from RFAD's initial 0
    path = _checkpoint.save_checkpoint(tmp_path, state, float(metrics["loss"]), keep_best=1)
    names = set(np.load(path).keys())
    assert {"log_scale", "opt_state/0/mu/log_scale", "opt_state/0/nu/log_scale"} <= names
    assert ("network_key" in names) != resample_networks
    template = algo.init(xs, ys, jax.random.PRNGKey(99))
    restored = _checkpoint.load_checkpoint(path, template)
    assert type(restored) is distill.KipState
    runs = []
    for start in (state, restored):
        for _ in range(2):
            start, metrics = update(start, xt, yt)
        runs.append((start, float(metrics["loss"])))
    (a, loss_a), (b, loss_b) = runs
    assert loss_a == loss_b
    for leaf_a, leaf_b in zip(
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True
    ):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    # An mse checkpoint has no Platt scale: it does not restore into this state.
    mse = distill.kip_on_features(_fc1_features(), optax.adam(0.05))
    (tmp_path / "mse").mkdir()
    other = _checkpoint.save_checkpoint(tmp_path / "mse", mse.init(xs, ys, template.key), 1.0, 1)
    with pytest.raises(ValueError, match="does not match"):
        _checkpoint.load_checkpoint(other, template)


@pytest.mark.parametrize("resample_networks", [True, False])
def test_resample_networks_draws_networks_per_step_or_once(resample_networks):
    # Step 2 from step 1's state with step 1's parameters put back: only the state's key
    # differs, and that key draws the networks only when they are resampled.
    xs, ys, xt, yt = _doctest_problem()
    for loss in ("mse", "platt"):
        algo = distill.kip_on_features(
            _fc1_features(), optax.adam(0.01), loss=loss, resample_networks=resample_networks
        )
        update = jax.jit(algo.update)
        first = algo.init(xs, ys, jax.random.PRNGKey(1))
        second, metrics_1 = update(first, xt, yt)
        rewound = second._replace(
            support_images=first.support_images,
            support_labels=first.support_labels,
            opt_state=first.opt_state,
            log_scale=first.log_scale,
        )
        _, metrics_2 = update(rewound, xt, yt)
        assert not np.array_equal(second.key, first.key)
        assert (float(metrics_1["loss"]) == float(metrics_2["loss"])) != resample_networks


def test_kip_on_features_rejects_an_unknown_loss():
    with pytest.raises(ValueError, match="'mse', 'platt'.*'hinge'"):
        distill.kip_on_features(_fc1_features(), optax.adam(0.01), loss="hinge")
