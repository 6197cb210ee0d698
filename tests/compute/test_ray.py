"""The Ray executor on a real local Ray cluster of 2 workers, started by these tests.

The tests of this module share one executor (its workers compile once) and run in
order: results first, then a worker killed mid-step, then the last worker killed.
"""

import sys

import numpy as np
import pytest

from kipd import compute

ray = pytest.importorskip("ray", reason="the Ray executor is an extra: pip install 'kipd[ray]'")

# The ConvNet kernel with one pooling block on 4x4 images: the same code path as the
# default depth 3, at a fraction of the compile time of each worker. bench/scaling.py
# checks the default ConvNet at 28x28 on Ray against the local executor.
SPEC = compute.KernelSpec("convnet", depth=1)
BLOCK = 3  # 5 support, 7 targets: 3 ss + 6 ts blocks per pass


@pytest.fixture(scope="module")
def executor():
    with compute.RayExecutor(workers=2, num_cpus=2) as executor:
        yield executor
    assert not ray.is_initialized()  # the local instance it started is stopped


@pytest.fixture(scope="module")
def problem(reference):
    return reference[1](np.float32, shape=(4, 4, 1))


@pytest.fixture(scope="module")
def kip_loss(reference):
    return reference[0]


@pytest.fixture(scope="module")
def local_result(problem, kip_loss):
    return compute.value_and_grad(kip_loss, SPEC, *problem, block_size=BLOCK)


def _flat(result):
    (loss, predictions), grads = result
    return [np.asarray(loss), np.asarray(predictions), *(np.asarray(g) for g in grads)]


def test_ray_equals_local_equals_jax_grad(executor, problem, kip_loss, local_result, reference):
    whole_value_and_grad = reference[2]
    got = compute.value_and_grad(kip_loss, SPEC, *problem, block_size=BLOCK, executor=executor)
    for a, b in zip(_flat(got), _flat(local_result)):
        np.testing.assert_array_equal(a, b)  # the same bits, not a tolerance
    (loss, _), (d_images, d_labels) = whole_value_and_grad(SPEC, *problem)
    np.testing.assert_allclose(_flat(got)[0], loss, rtol=1e-5)
    np.testing.assert_allclose(_flat(got)[2], d_images, rtol=2e-3, atol=1e-5)  # float32
    np.testing.assert_allclose(_flat(got)[3], d_labels, rtol=1e-4, atol=1e-6)
    assert len(set(executor.pids())) == 2


def test_a_worker_killed_mid_step_changes_nothing(executor, problem, kip_loss):
    before = compute.value_and_grad(kip_loss, SPEC, *problem, block_size=BLOCK, executor=executor)
    victim = executor.workers[0]
    finished = []

    def kill_in_the_backward_pass():
        finished.append(1)
        if len(finished) == 11:  # 9 forward blocks done, 2 of the VJP pass
            ray.kill(victim, no_restart=True)

    with pytest.warns(RuntimeWarning, match="worker died"):
        after = compute.value_and_grad(
            kip_loss,
            SPEC,
            *problem,
            block_size=BLOCK,
            executor=executor,
            on_block=kill_in_the_backward_pass,
        )
    assert executor.workers_alive == 1
    assert len(finished) == 18  # every block reported once, lost ones re-run elsewhere
    for a, b in zip(_flat(after), _flat(before)):
        np.testing.assert_array_equal(a, b)


def test_losing_every_worker_fails_with_a_clear_error(executor, problem, kip_loss):
    for actor in list(executor._alive):
        ray.kill(actor, no_restart=True)
    with pytest.raises(compute.ComputeError, match="every Ray worker was lost.*--resume"):
        with pytest.warns(RuntimeWarning):
            compute.value_and_grad(kip_loss, SPEC, *problem, block_size=BLOCK, executor=executor)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'kipd\[ray\]'"):
        compute.RayExecutor()
