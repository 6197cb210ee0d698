"""The local executor over several devices (forced CPU devices, in a fresh process): every
device takes blocks, and the numbers are one device's, bit for bit."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from kipd import compute
    from kipd.distill import krr_loss

    assert len(jax.local_devices()) == 4
    rng = np.random.default_rng(0)
    support = rng.standard_normal((5, 6, 6, 1)).astype(np.float32)
    targets = rng.standard_normal((9, 6, 6, 1)).astype(np.float32)
    y_s = rng.standard_normal((5, 2)).astype(np.float32)
    y_t = rng.standard_normal((9, 2)).astype(np.float32)
    loss = lambda k_ss, k_ts, a, b: krr_loss(k_ts, k_ss, a, b)
    spec = compute.KernelSpec("convnet", depth=1)
    every = compute.LocalExecutor()
    one = compute.LocalExecutor(jax.local_devices()[:1])
    used = set()
    original = compute.BlockWorker.run
    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        used.update(d.id for leaf in jax.tree_util.tree_leaves(out) for d in leaf.devices())
        return out
    compute.BlockWorker.run = spy
    a = compute.value_and_grad(loss, spec, support, targets, y_s, y_t, block_size=2, executor=every)
    assert used == {0, 1, 2, 3}, used
    b = compute.value_and_grad(loss, spec, support, targets, y_s, y_t, block_size=2, executor=one)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    k_every = compute.kernel_matrix(spec, targets, support, block_size=2, executor=every)
    k_one = compute.kernel_matrix(spec, targets, support, block_size=2, executor=one)
    np.testing.assert_array_equal(k_every, k_one)
    print("ok")
    """
)


def test_blocks_spread_over_four_devices_give_the_one_device_result():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
