"""A GPU's chunk-size calibration, run on this CPU (explicitly: on a CPU nothing calls it),
its cache and its lock; the kernel a differentiated block uses; the device summary."""

import functools
import os
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import kipd.kernels
from kipd import compute, files
from kipd.compute import _chunk_sizes
from kipd.compute._worker import _with_vjp_chunks

TINY = dict(name="fc1", image_shape=(4, 4, 1), side=2, repeats=1)


def test_a_calibration_times_the_candidates_and_is_cached(tmp_path):
    first = compute.calibrate_chunk_sizes((1, 4, 100), cache_dir=tmp_path, **TINY)
    assert not first.cached and first.pairs_per_call == 4
    # 100 pairs per chunk is more than a call's 4 pairs: not tried.
    assert set(first.forward_seconds) == set(first.vjp_seconds) == {1, 4}
    assert first.forward_pairs == min(first.forward_seconds, key=first.forward_seconds.get)
    assert first.vjp_pairs == min(first.vjp_seconds, key=first.vjp_seconds.get)
    record = kipd.kernels.chunk_calibration(cache_dir=tmp_path)
    assert record["vjp_entries"] == first.vjp_pairs * 4 * 4  # FC: one entry per pixel
    again = compute.calibrate_chunk_sizes((1, 2), cache_dir=tmp_path, **TINY)
    assert again == first._replace(cached=True)
    forced = compute.calibrate_chunk_sizes((2,), cache_dir=tmp_path, force=True, **TINY)
    assert (forced.forward_pairs, forced.vjp_pairs, forced.cached) == (2, 2, False)


def test_a_calibration_says_what_it_measures(tmp_path):
    lines = []
    compute.calibrate_chunk_sizes((1,), cache_dir=tmp_path, log=lines.append, **TINY)
    assert len(lines) == 1 and "once per machine" in lines[0] and "chunks of [1] pairs" in lines[0]


def test_a_candidate_that_fails_is_left_out(tmp_path):
    def kernel_for(pairs):
        if pairs == 2:
            return lambda a, b: 1 / 0
        return kipd.kernels.make("fc1", pairs_per_block=pairs)

    images = tuple(np.ones((2, 4, 4, 1), np.float32) for _ in range(2))
    forward, vjp = _chunk_sizes._time_candidates(kernel_for, images, (1, 2), repeats=1)
    assert set(forward) == set(vjp) == {1}


def test_on_a_cpu_nothing_is_calibrated(tmp_path):
    assert _chunk_sizes.ensure_chunk_sizes(cache_dir=tmp_path) is None
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def gpu_like(monkeypatch):
    """``ensure_chunk_sizes`` believes it runs on a GPU; its calibration is a stub that
    records its calls and stores 64 / 16 pairs."""
    calls = []

    def calibrate(cache_dir, log):
        calls.append(cache_dir)
        kipd.kernels.store_chunk_calibration(
            {"forward": 64, "vjp": 16},
            (1, 1),
            (8, 8, 1),
            {},
            pairs_per_call=64,
            cache_dir=cache_dir,
        )
        return "calibrated"

    monkeypatch.setattr(_chunk_sizes.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(_chunk_sizes, "calibrate_chunk_sizes", calibrate)
    return calls


def test_a_gpu_calibrates_once_per_machine(tmp_path, gpu_like):
    assert _chunk_sizes.ensure_chunk_sizes(cache_dir=tmp_path) == "calibrated"
    second = _chunk_sizes.ensure_chunk_sizes(cache_dir=tmp_path)
    assert (second.forward_pairs, second.vjp_pairs, second.cached) == (64, 16, True)
    assert gpu_like == [tmp_path]
    assert not (tmp_path / _chunk_sizes.LOCK_FILE).exists()


def test_a_process_waits_for_another_ones_calibration(tmp_path, gpu_like):
    with files.exclusive_lock(tmp_path / _chunk_sizes.LOCK_FILE):  # another process calibrates
        assert _chunk_sizes.ensure_chunk_sizes(cache_dir=tmp_path, wait_seconds=0.2) is None
        finish = threading.Timer(
            0.5,
            functools.partial(
                kipd.kernels.store_chunk_calibration,
                {"forward": 8, "vjp": 4},
                (1, 1),
                (8, 8, 1),
                {},
                pairs_per_call=64,
                cache_dir=tmp_path,
            ),
        )
        finish.start()
        waited = _chunk_sizes.ensure_chunk_sizes(cache_dir=tmp_path, wait_seconds=30)
        finish.join()
    assert (waited.forward_pairs, waited.vjp_pairs) == (8, 4)
    assert gpu_like == []  # it used the other process's result


def test_a_differentiated_kernel_takes_the_vjp_chunks(monkeypatch):
    asked = []

    def pairs_for(in_band, image_shape, **kw):
        asked.append((in_band, image_shape, kw))
        return 3

    monkeypatch.setattr(kipd.kernels, "default_pairs_per_block", pairs_for)
    spec = compute.KernelSpec("fc1", implementation="xla")
    make = functools.partial(kipd.kernels.make, "fc1", implementation="xla")
    kernel = _with_vjp_chunks(make, spec)
    x1 = np.random.default_rng(0).standard_normal((5, 4, 4, 1)).astype(np.float32)
    x2 = x1[:2] + 1
    np.testing.assert_allclose(kernel(x1, x2), spec.build()(x1, x2), rtol=1e-6)
    assert asked == [((0, 0), (4, 4, 1), {"vjp": True})]


def test_on_a_cpu_a_differentiated_kernel_is_the_same_kernel():
    spec = compute.KernelSpec("convnet", depth=1)
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype(np.float32)
    assert np.array_equal(spec.build(vjp=True)(x, x[:2]), spec.build()(x, x[:2]))


def test_the_device_summary_names_cores_or_accelerators():
    cores = len(os.sched_getaffinity(0))
    assert compute.device_summary() == f"{cores} CPU core{'s' if cores != 1 else ''}"
    h100 = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
    a100 = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA A100-SXM4-40GB")
    assert compute.device_summary([h100]) == "1 x NVIDIA H100 80GB HBM3"
    assert compute.device_summary([h100, a100, h100]) == (
        "2 x NVIDIA H100 80GB HBM3, 1 x NVIDIA A100-SXM4-40GB"
    )


def test_the_device_summary_counts_forced_host_devices():
    code = (
        "from kipd import compute; "
        "print(compute.device_summary(), compute.LocalExecutor().workers_alive, sep='|')"
    )
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    cores = len(os.sched_getaffinity(0))
    assert out.stdout.strip() == f"4 CPU devices on {cores} core{'s' if cores != 1 else ''}|4"
