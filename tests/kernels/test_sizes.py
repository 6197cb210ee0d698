"""The chunk-size policy: the CPU's static sizes, and a GPU's calibrated sizes read from the
per-machine cache (written, read back, invalidated by a new JAX or kipd)."""

import json

import jax
import pytest

import kipd
from kipd.kernels import (
    _sizes,
    architecture,
    chunk_calibration,
    default_pairs_per_block,
    store_chunk_calibration,
)

CONVNET = architecture("convnet").band(None)  # (7, 7)
CONVVEC = architecture("convvec8").band(None)  # (0, 0)
CIFAR, MNIST = (32, 32, 3), (28, 28, 1)
CONVNET_PAIR = 15 * 15 * 32 * 32  # band entries of one ConvNet pair at 32x32
# The CPU's sizes before GPU calibrations existed: (band, shape, fused, pooled) -> pairs.
CPU_POLICY = {
    (CONVNET, CIFAR, False, False): 1,
    (CONVNET, CIFAR, True, False): 4,
    (CONVNET, CIFAR, True, True): 64,
    (CONVNET, MNIST, True, True): 64,
    (CONVVEC, CIFAR, False, False): 128,
    (CONVVEC, MNIST, False, False): 167,
    (CONVVEC, MNIST, True, True): 128,
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder (``$KIPD_CACHE_DIR``) for one test."""
    monkeypatch.setenv("KIPD_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def as_gpu(monkeypatch):
    """``jax.devices("gpu")`` answers with this CPU's device, so the accelerator branch of
    the policy reads the calibration stored for it."""
    cpu = jax.devices("cpu")
    monkeypatch.setattr(_sizes.jax, "devices", lambda backend=None: cpu)


def _store(forward=1024, vjp=64, shape=CIFAR, **kw):
    return store_chunk_calibration(
        {"forward": forward, "vjp": vjp},
        CONVNET,
        shape,
        {"forward": {forward: 0.1}, "vjp": {vjp: 0.2}},
        pairs_per_call=1024,
        **kw,
    )


def _cpu_sizes():
    return {
        key: default_pairs_per_block(key[0], key[1], "cpu", fused=key[2], pooled=key[3])
        for key in CPU_POLICY
    }


def test_the_cpu_policy_is_unchanged_and_ignores_a_calibration(cache, as_gpu):
    assert _cpu_sizes() == CPU_POLICY
    _store(forward=7, vjp=3)  # a calibration for this very device
    assert chunk_calibration() is not None
    assert _cpu_sizes() == CPU_POLICY
    for vjp in (False, True):
        assert default_pairs_per_block(CONVNET, CIFAR, "cpu", True, True, vjp=vjp) == 64


def test_a_calibration_is_written_and_read_back_as_band_entries(cache):
    path = _store()
    assert path == cache / _sizes.CHUNK_SIZES_FILE
    record = chunk_calibration()
    assert record["forward_pairs"] == 1024 and record["vjp_pairs"] == 64
    assert record["forward_entries"] == 1024 * CONVNET_PAIR
    assert record["vjp_entries"] == 64 * CONVNET_PAIR
    assert record["seconds"] == {"forward": {"1024": 0.1}, "vjp": {"64": 0.2}}
    key = _sizes.chunk_sizes_key()
    assert key == f"cpu:cpu|jax {jax.__version__}|kipd {kipd.__version__}"
    assert list(json.loads(path.read_text())) == [key]


def test_the_cache_folder_can_be_given(tmp_path, cache):
    _store(cache_dir=tmp_path / "elsewhere")
    assert chunk_calibration() is None
    assert chunk_calibration(cache_dir=tmp_path / "elsewhere")["vjp_pairs"] == 64


def test_a_new_jax_or_kipd_version_calibrates_again(cache, monkeypatch):
    _store()
    with monkeypatch.context() as patched:
        patched.setattr(jax, "__version__", "0.0.1")
        assert chunk_calibration() is None
        _store(forward=256, vjp=256)  # kept beside the other version's record
        assert chunk_calibration()["forward_pairs"] == 256
    with monkeypatch.context() as patched:
        patched.setattr(kipd, "__version__", "99.0")
        assert chunk_calibration() is None
    assert chunk_calibration()["forward_pairs"] == 1024
    assert len(json.loads((cache / _sizes.CHUNK_SIZES_FILE).read_text())) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "{not json",
        lambda text: "[]",
        lambda text: text.replace('"vjp_entries": ', '"vjp_entries": -'),
        lambda text: text.replace('"forward_pairs": 1024', '"forward_pairs": "1024"'),
    ],
    ids=["not json", "not a dict", "negative entries", "pairs a string"],
)
def test_a_damaged_cache_is_no_calibration(cache, damage):
    path = _store()
    path.write_text(damage(path.read_text()))
    assert chunk_calibration() is None
    _store()  # a new calibration replaces it
    assert chunk_calibration()["vjp_pairs"] == 64


def test_a_gpu_uses_its_calibration_forward_and_vjp(cache, as_gpu):
    static = 2**26 // CONVNET_PAIR
    assert default_pairs_per_block(CONVNET, CIFAR, "gpu") == static == 291
    assert default_pairs_per_block(CONVNET, CIFAR, "gpu", vjp=True) == static
    _store()
    assert default_pairs_per_block(CONVNET, CIFAR, "gpu") == 1024
    assert default_pairs_per_block(CONVNET, CIFAR, "gpu", vjp=True) == 64
    # Kept as band entries: other shapes get as many entries per chunk.
    assert default_pairs_per_block(CONVNET, MNIST, "gpu") == 1024 * CONVNET_PAIR // (15 * 15 * 784)
    assert default_pairs_per_block(CONVVEC, CIFAR, "gpu", vjp=True) == 64 * CONVNET_PAIR // 1024


def test_a_backend_this_process_lacks_takes_the_static_size(cache):
    _store()
    assert default_pairs_per_block(CONVNET, CIFAR, "gpu") == 291  # no GPU here
