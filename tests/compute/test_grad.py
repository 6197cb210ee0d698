"""The block plan's loss and gradient against ``jax.grad`` of the whole loss."""

import jax
import numpy as np
import pytest

from kipd import compute


@pytest.mark.parametrize("pullback_memory", [None, 0], ids=["kept", "recomputed"])
@pytest.mark.parametrize("name, block_size", [("convnet", 2), ("fc1", 3)])
def test_blocked_gradient_equals_jax_grad_in_float64(name, block_size, pullback_memory, reference):
    kip_loss, make_problem, whole_value_and_grad = reference
    # ConvNet with one pooling block on 4x4 images: the same layers and code path as the
    # default depth 3 at a fraction of the float64 compile time.
    spec = compute.KernelSpec(name, depth=1 if name == "convnet" else None)
    with jax.enable_x64(True):
        support, targets, support_labels, target_labels = make_problem(np.float64, shape=(4, 4, 1))
        (loss, predictions), (d_images, d_labels, _) = compute.value_and_grad(
            kip_loss,
            spec,
            support,
            targets,
            support_labels,
            target_labels,
            block_size=block_size,
            executor=compute.LocalExecutor(pullback_memory=pullback_memory),
        )
        (loss_ref, predictions_ref), (d_images_ref, d_labels_ref) = whole_value_and_grad(
            spec, support, targets, support_labels, target_labels
        )
    assert d_images.dtype == np.float64
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-8)
    np.testing.assert_allclose(predictions, predictions_ref, rtol=1e-7, atol=1e-9)
    for got, ref in ((d_images, d_images_ref), (d_labels, d_labels_ref)):
        got, ref = np.asarray(got), np.asarray(ref)
        relative = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert relative <= 1e-5, relative  # issue bar; observed ~1e-9


def test_kernel_matrix_by_blocks_equals_one_call(reference):
    make_problem = reference[1]
    spec = compute.KernelSpec("fc1")
    support, targets, _, _ = make_problem(np.float32, support=4, targets=11, shape=(3, 3, 2))
    progress = []
    got = compute.kernel_matrix(spec, targets, support, block_size=3, desc=None)
    np.testing.assert_allclose(got, spec.build()(targets, support), rtol=1e-6, atol=1e-6)
    compute.kernel_matrix(
        spec,
        targets,
        support,
        block_size=3,
        executor=_CountingExecutor(compute.LocalExecutor(), progress),
    )
    assert len(progress) == 8  # 4 target blocks (of 3 rows) x 2 support blocks (of 2 rows)


class _CountingExecutor:
    def __init__(self, inner, calls):
        self.inner, self.calls, self.name = inner, calls, "local"

    def map(self, spec, phase, shared, plan, on_block=None):
        return self.inner.map(spec, phase, shared, plan, lambda: self.calls.append(phase))


class _PhaseRecorder(compute.LocalExecutor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.phases = []

    def map(self, spec, phase, shared, plan, on_block=None, pullbacks=None):
        self.phases.append(phase)
        return super().map(spec, phase, shared, plan, on_block, pullbacks)


def test_the_local_executor_keeps_pullbacks_only_where_they_fit(reference):
    kip_loss, make_problem, _ = reference
    spec = compute.KernelSpec("convvec2")
    problem = make_problem(np.float32, shape=(5, 5, 1))
    outputs, phases = {}, {}
    for memory in (None, 1):  # a quarter of the RAM; one byte, which nothing fits
        executor = _PhaseRecorder(pullback_memory=memory)
        outputs[memory] = compute.value_and_grad(
            kip_loss, spec, *problem, block_size=2, executor=executor
        )
        phases[memory] = executor.phases
    # Both linearize (the values the gradient path uses); one keeps the pullbacks.
    assert phases == {None: ["linearize", "vjp"], 1: ["linearize", "vjp"]}
    for a, b in zip(
        jax.tree_util.tree_leaves(outputs[None]), jax.tree_util.tree_leaves(outputs[1])
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="pullback_memory must be >= 0"):
        compute.LocalExecutor(pullback_memory=-1)


@pytest.mark.parametrize("share", ["first", "none"])
def test_kept_some_and_recomputed_pullbacks_give_the_same_bits(share, reference):
    """A budget of exactly one block's pullback (the first block is kept, the others are
    recomputed in the VJP pass) or of none: the step is bit for bit the one that keeps
    every pullback. ConvNet blocks of 160 pairs, more than one internal block of pairs of
    the kernel (at most 128), where a kept and a rematerialized linearization once rounded apart."""
    kip_loss, make_problem, _ = reference
    spec = compute.KernelSpec("convnet", depth=1)
    problem = make_problem(np.float32, support=8, targets=40, shape=(6, 6, 1))
    support, targets = problem[:2]
    plan = compute.plan_blocks(len(support), len(targets), 20)
    shared = {
        "support": compute._plan.pad_rows(support, plan.padded_support_size),
        "targets": compute._plan.pad_rows(targets, plan.padded_target_size),
    }
    sizes = (plan.support_block, plan.target_block)
    first = compute._local.block_worker(spec).pullback_bytes(shared, sizes, plan.blocks[0])
    executor = compute.LocalExecutor(pullback_memory=first if share == "first" else 0)
    linearized = executor.map(spec, "linearize", shared, plan)
    expected_kept = [share == "first"] + [False] * (len(plan.blocks) - 1)
    assert [pullback is not None for _, pullback in linearized] == expected_kept
    some = compute.value_and_grad(kip_loss, spec, *problem, block_size=20, executor=executor)
    every = compute.value_and_grad(kip_loss, spec, *problem, block_size=20)
    for a, b in zip(jax.tree_util.tree_leaves(some), jax.tree_util.tree_leaves(every), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_block_sizes_follow_kernel_cost():
    image = (28, 28, 1)
    assert compute.default_block_size(compute.KernelSpec("convnet"), image) == 32
    # FC and ConvVec keep one band entry per pixel pair (offset 0 only).
    assert compute.default_block_size(compute.KernelSpec("fc3"), image) == 512
    assert compute.default_block_size(compute.KernelSpec("convvec3"), image) == 512
