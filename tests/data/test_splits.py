"""split_validation, class_balanced_subset and centered_one_hot."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kipd.data as kd


def _dataset(n_train: int = 40, classes: int = 4) -> kd.Dataset:
    x = np.arange(n_train, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1))
    y = (np.arange(n_train) % classes).astype(np.int32)
    return kd.Dataset(
        "toy",
        x.astype(np.float32),
        y,
        x[:5].astype(np.float32),
        y[:5],
        classes,
        tuple("abcd"[:classes]),
    )


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 39), seed=st.integers(0, 2**31))
def test_split_validation_partitions_train(size, seed):
    ds = _dataset()
    split = kd.split_validation(ds, size=size, seed=seed)
    assert len(split.x_val) == size and len(split.x_train) == 40 - size
    ids = np.concatenate([split.x_train[:, 0, 0, 0], split.x_val[:, 0, 0, 0]]).astype(int)
    assert sorted(ids) == list(range(40))  # a partition of train
    np.testing.assert_array_equal(split.y_val, ds.y_train[split.x_val[:, 0, 0, 0].astype(int)])
    assert np.all(np.diff(split.x_train[:, 0, 0, 0]) > 0)  # original order kept
    assert split.x_test is ds.x_test
    again = kd.split_validation(ds, size=size, seed=seed)
    np.testing.assert_array_equal(again.x_val, split.x_val)


def test_split_validation_errors():
    ds = _dataset()
    for size in (0, 40, -1):
        with pytest.raises(ValueError, match="validation size"):
            kd.split_validation(ds, size=size)
    with pytest.raises(ValueError, match="already has a validation split"):
        kd.split_validation(kd.split_validation(ds, size=5), size=5)


@settings(max_examples=25, deadline=None)
@given(per_class=st.integers(1, 10), seed=st.integers(0, 2**31))
def test_class_balanced_subset(per_class, seed):
    ds = _dataset()
    x, y, idx = kd.class_balanced_subset(ds.x_train, ds.y_train, per_class, seed)
    assert np.bincount(y).tolist() == [per_class] * 4
    assert y.tolist() == sorted(y.tolist())  # grouped by class
    assert len(set(idx.tolist())) == len(idx)  # without replacement
    np.testing.assert_array_equal(x, ds.x_train[idx])
    np.testing.assert_array_equal(y, ds.y_train[idx])
    x2, _, idx2 = kd.class_balanced_subset(ds.x_train, ds.y_train, per_class, seed)
    np.testing.assert_array_equal(idx2, idx)


def test_class_balanced_subset_accepts_a_key():
    ds = _dataset()
    key = jax.random.PRNGKey(3)
    _, _, a = kd.class_balanced_subset(ds.x_train, ds.y_train, 5, key)
    _, _, b = kd.class_balanced_subset(ds.x_train, ds.y_train, 5, key)
    _, _, c = kd.class_balanced_subset(ds.x_train, ds.y_train, 5, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    _, _, d = kd.class_balanced_subset(ds.x_train, ds.y_train, 5, 3)
    np.testing.assert_array_equal(a, d)  # an int seed means PRNGKey(seed)


def test_class_balanced_subset_errors():
    ds = _dataset()
    with pytest.raises(ValueError, match="fewer than per_class=11"):
        kd.class_balanced_subset(ds.x_train, ds.y_train, 11, 0)
    with pytest.raises(ValueError, match="at least 1"):
        kd.class_balanced_subset(ds.x_train, ds.y_train, 0, 0)


@settings(max_examples=25, deadline=None)
@given(labels=st.lists(st.integers(0, 6), min_size=16, max_size=16))
def test_centered_one_hot(labels):
    targets = kd.centered_one_hot(jnp.array(labels), 7)
    assert targets.shape == (len(labels), 7) and targets.dtype == jnp.float32
    np.testing.assert_allclose(targets.sum(axis=1), 0.0, atol=1e-6)
    np.testing.assert_array_equal(jnp.argmax(targets, axis=1), labels)
    np.testing.assert_allclose(targets.max(axis=1), 1 - 1 / 7, rtol=1e-6)
    np.testing.assert_allclose(targets.min(axis=1), -1 / 7, rtol=1e-6)
