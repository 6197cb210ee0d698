"""Checkpoints: the whole state by tree path, retention of the best and the latest."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kipd import distill
from kipd.runs import _checkpoint


def _state(step):
    algo = distill.kip(lambda a, b: jnp.zeros((a.shape[0], b.shape[0])), optax.adam(0.1))
    state = algo.init(jnp.ones((2, 3, 3, 1)), jnp.eye(2), jnp.array([0, 7], jnp.uint32))
    return state._replace(
        step=jnp.asarray(step, jnp.int32), support_images=state.support_images * step
    )


def test_keeps_the_best_by_loss_and_the_latest(tmp_path):
    losses = {1: 0.5, 2: 0.1, 3: 0.3, 4: 0.2, 5: 0.9, 6: 0.4}
    for step, loss in losses.items():
        _checkpoint.save_checkpoint(tmp_path, _state(step), loss, keep_best=2)
    assert sorted(_checkpoint.list_checkpoints(tmp_path)) == [2, 4, 6]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_restores_the_whole_state(tmp_path):
    state = _state(3)
    path = _checkpoint.save_checkpoint(tmp_path, state, 0.5, keep_best=5)
    restored = _checkpoint.load_checkpoint(path, _state(0))
    assert type(restored) is distill.KipState
    for a, b in zip(
        jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not match"):
        _checkpoint.load_checkpoint(path, _state(0)._replace(support_images=jnp.ones((3, 3, 3, 1))))


def test_leaves_are_stored_by_tree_path(tmp_path):
    path = _checkpoint.save_checkpoint(tmp_path, _state(2), 0.5, keep_best=5)
    arrays = dict(np.load(path))
    assert {"support_images", "support_labels", "step", "key", "loss"} <= arrays.keys()
    assert any(name.startswith("opt_state/") for name in arrays)
    images, labels = _checkpoint.read_support(path)
    np.testing.assert_array_equal(images, _state(2).support_images)
    np.testing.assert_array_equal(labels, _state(2).support_labels)
