"""Same bits everywhere: a ConvNet KIP run gives identical images and labels whether its
blocks' pullbacks were kept or recomputed, on the local executor or on Ray (a worker
killed mid-pass), and after a Ray run that lost its cluster is resumed locally.

Compared with ``==``, not a tolerance: Adam turns float32 rounding of near-zero gradients
into whole steps, so a tolerance would hide a run that diverges.
"""

import numpy as np
import pytest

from kipd import compute, runs

ray = pytest.importorskip("ray", reason="the Ray executor is an extra: pip install 'kipd[ray]'")


def _config(dataset, **changes):
    # ConvNet (C++ stages) on 8x8 images; 6 support images x 30 targets in one block of
    # 180 pairs: more than one internal block of pairs of the kernel (at most 128), where a kept
    # and a rematerialized linearization of the same block once rounded apart.
    options = dict(
        dataset=dataset,
        kernels=("convnet",),
        images_per_class=2,
        steps=4,
        target_batch_size=30,
        block_size=30,
        checkpoint_every=2,
        eval_every=4,
        eval_size=20,
        test_size=20,
        keep_best=1,
    )
    return runs.KipConfig(**{**options, **changes})


def _distilled(run_dir):
    with np.load(run_dir / "distilled.npz") as arrays:
        return arrays["images"], arrays["labels"]


class _Killing:
    """A Ray executor that kills ``victims`` of its actors after ``after`` blocks of the
    ``pass_number``-th pass (counting every pass of the run, evaluations included)."""

    name = "ray"

    def __init__(self, inner, pass_number, after, victims):
        self.inner, self.pass_number, self.after, self.victims = inner, pass_number, after, victims
        self.passes = 0

    @property
    def workers_alive(self):
        return self.inner.workers_alive

    def map(self, spec, phase, shared, plan, on_block=None):
        self.passes += 1
        finished = []

        def kill_midway():
            finished.append(1)
            if self.passes == self.pass_number and len(finished) == self.after:
                for actor in self.victims(self.inner):
                    ray.kill(actor, no_restart=True)

        return self.inner.map(spec, phase, shared, plan, kill_midway)


@pytest.fixture(scope="module")
def kept(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity") / "kept"
    runs.run_kip(_config(tiny_dataset), out, progress=False)
    return _distilled(out)


def test_recomputed_pullbacks_give_the_kept_run(tiny_dataset, kept, tmp_path):
    executor = compute.LocalExecutor(pullback_memory=0)
    runs.run_kip(_config(tiny_dataset), tmp_path / "r", progress=False, executor=executor)
    for got, expected in zip(_distilled(tmp_path / "r"), kept, strict=True):
        assert np.array_equal(got, expected)


def test_ray_with_a_worker_killed_mid_pass_and_a_ray_run_resumed_locally_give_the_kept_run(
    tiny_dataset, kept, tmp_path
):
    with compute.RayExecutor(workers=2, num_cpus=2) as cluster:
        # Passes: the init's reading (1), then forward + VJP per step; the 5th is step 2's
        # VJP pass: one of the two workers dies after its first block.
        one_dies = _Killing(cluster, 5, 1, lambda inner: inner.workers[:1])
        with pytest.warns(RuntimeWarning, match="worker died"):
            runs.run_kip(_config(tiny_dataset), tmp_path / "ray", progress=False, executor=one_dies)
        assert cluster.workers_alive == 1
    for got, expected in zip(_distilled(tmp_path / "ray"), kept, strict=True):
        assert np.array_equal(got, expected)

    with compute.RayExecutor(workers=2, num_cpus=2) as cluster:
        # The 7th pass is step 3's VJP: the cluster dies after checkpoint 2.
        all_die = _Killing(cluster, 7, 1, lambda inner: list(inner.workers))
        with pytest.raises(runs.ComputeError, match="--resume"), pytest.warns(RuntimeWarning):
            runs.run_kip(
                _config(tiny_dataset), tmp_path / "moved", progress=False, executor=all_die
            )
    runs.run_kip(
        runs.resume_config(tmp_path / "moved"), tmp_path / "moved", resume=True, progress=False
    )
    for got, expected in zip(_distilled(tmp_path / "moved"), kept, strict=True):
        assert np.array_equal(got, expected)
