"""Shared pieces of the compute tests: a KIP loss of kernel matrices, a small problem,
and the reference (autodiff of the whole loss)."""

import jax
import numpy as np
import pytest

from kipd.distill import krr_loss


def kip_loss(k_ss, k_ts, support_labels, target_labels):
    """The KIP loss (eq. 1) as a function of kernel matrices, in kipd.compute's order."""
    return krr_loss(k_ts, k_ss, support_labels, target_labels)


def make_problem(dtype, support=5, targets=7, shape=(8, 8, 1)):
    """Support images, target images, support labels, target labels."""
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((support, *shape)).astype(dtype),
        rng.standard_normal((targets, *shape)).astype(dtype),
        rng.standard_normal((support, 3)).astype(dtype),
        rng.standard_normal((targets, 3)).astype(dtype),
    )


def whole_value_and_grad(spec, support, targets, support_labels, target_labels):
    """``jax.value_and_grad`` of the whole loss in the support images and labels."""
    kernel = spec.build()

    def loss(images, labels):
        return kip_loss(kernel(images, images), kernel(targets, images), labels, target_labels)

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(support, support_labels)


@pytest.fixture(scope="session")
def reference():
    """``(kip_loss, make_problem, whole_value_and_grad)``."""
    return kip_loss, make_problem, whole_value_and_grad
