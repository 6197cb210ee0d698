"""The cost model behind ``kipd distill --plan``."""

import numpy as np

from kipd import compute
from kipd.compute._estimate import block_overhead
from kipd.distill import krr_loss


def _fc1_estimate(**kwargs):
    return compute.estimate_step(
        compute.KernelSpec("fc1"),
        (4, 4, 1),
        support_size=6,
        target_size=20,
        block_size=4,
        loss_fn=lambda k_ss, k_ts, y_s, y_t: krr_loss(k_ts, k_ss, y_s, y_t),
        loss_args=(np.zeros((6, 2), np.float32), np.zeros((20, 2), np.float32)),
        overhead_seconds=1e-3,
        repeats=1,
        **kwargs,
    )


def test_estimate_measures_blocks_and_models_workers():
    estimate = _fc1_estimate()
    assert estimate.plan.count("ss") == 3 and estimate.plan.count("ts") == 5 * 2
    assert estimate.entries() == 3 * 3 * 3 + 10 * 4 * 3
    assert all(t > 0 for t in (*estimate.forward_seconds.values(), *estimate.vjp_seconds.values()))
    one, four = estimate.step_seconds(1), estimate.step_seconds(4)
    assert four < one
    # Overhead and server are not divided among workers; block compute is.
    assert np.isclose(one - four, estimate.compute_seconds() * 0.75)
    assert four >= estimate.server_seconds + 2 * 13 * 1e-3
    assert estimate.peak_bytes_per_worker > 0


def test_an_estimate_with_kept_pullbacks_counts_their_memory():
    kept = _fc1_estimate(keep_pullbacks=True)
    assert all(t > 0 for t in (*kept.forward_seconds.values(), *kept.vjp_seconds.values()))
    assert kept.peak_bytes_per_worker > _fc1_estimate().peak_bytes_per_worker


def test_block_overhead_of_the_local_executor_is_small():
    assert 0 < block_overhead(compute.LocalExecutor(), blocks=8) < 0.05
