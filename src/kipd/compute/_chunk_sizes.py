"""A GPU's chunk sizes from a short calibration on the device, cached per machine.

How many pairs a kernel computes at once (a chunk, ``make``'s ``pairs_per_block``) decides
how well a GPU is filled, and the best size differs between the forward and the
fwd+VJP (on an H200, ConvNet at 32x32x3: 1024 pairs fastest forward, 64 fwd+VJP, the
static default ~290 pairs neither; README). :func:`calibrate_chunk_sizes` times a few
candidates, forward and fwd+VJP, on one default block of the plan on this process's
device and keeps the winners in ``chunk_sizes.json`` (``kipd.kernels.chunk_calibration``:
per device kind, JAX and kipd version); ``kipd.kernels.default_pairs_per_block`` then
uses them on that device. :func:`ensure_chunk_sizes` runs it once per machine, before
the first block of ``kipd.compute`` on a GPU (one process at a time, under a lock). On a
CPU nothing runs: its chunk sizes are the static policy.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import kipd.kernels
from kipd import files

CHUNK_CANDIDATES = (64, 256, 1024)
"""Pairs per chunk a calibration tries: the H200's two winners and the static default's
neighbourhood (16 was slowest there in both passes)."""

LOCK_FILE = "chunk_sizes.lock"
"""Held in the cache folder while a process calibrates; others wait for its result."""


class ChunkCalibration(NamedTuple):
    """The chunk sizes measured fastest on a device.

    Attributes:
      forward_pairs: pairs per chunk of a kernel that is only evaluated.
      vjp_pairs: pairs per chunk of a kernel that is differentiated (fwd+VJP).
      forward_seconds: ``{candidate pairs: seconds of one forward call}``.
      vjp_seconds: ``{candidate pairs: seconds of one fwd+VJP call}``.
      pairs_per_call: pairs of each timed call (one default block of the plan).
      cached: read from ``chunk_sizes.json`` (``False``: measured just now).
    """

    forward_pairs: int
    vjp_pairs: int
    forward_seconds: dict[int, float]
    vjp_seconds: dict[int, float]
    pairs_per_call: int
    cached: bool


def _from_record(record: dict[str, Any]) -> ChunkCalibration:
    seconds = record.get("seconds", {})
    per_kind = [
        {int(p): float(s) for p, s in seconds.get(k, {}).items()} for k in ("forward", "vjp")
    ]
    return ChunkCalibration(
        int(record["forward_pairs"]),
        int(record["vjp_pairs"]),
        per_kind[0],
        per_kind[1],
        int(record.get("pairs_per_call", 0)),
        cached=True,
    )


def _call_seconds(fn: Callable[..., Any], args: tuple[Any, ...], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn(*args)``, after compiling it and
    one call to warm up."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _time_candidates(
    kernel_for: Callable[[int], Any],
    images: tuple[Any, Any],
    candidates: Sequence[int],
    repeats: int,
) -> tuple[dict[int, float], dict[int, float]]:
    """Seconds of one forward and of one fwd+VJP (gradient of ``sum(K)`` in ``x1``) call per
    candidate; a candidate that fails (e.g. out of device memory) is left out."""
    forward: dict[int, float] = {}
    vjp: dict[int, float] = {}
    for pairs in candidates:
        kernel = kernel_for(pairs)
        # A size that does not run (out of device memory, say) is simply not chosen.
        with contextlib.suppress(Exception):
            forward[pairs] = _call_seconds(lambda a, b: kernel(a, b), images, repeats)
        with contextlib.suppress(Exception):
            grad = jax.grad(lambda a, b: jnp.sum(kernel(a, b)))
            vjp[pairs] = _call_seconds(grad, images, repeats)
    return forward, vjp


def calibrate_chunk_sizes(
    candidates: Sequence[int] = CHUNK_CANDIDATES,
    *,
    name: str = "convnet",
    image_shape: tuple[int, int, int] = (32, 32, 3),
    depth: int | None = None,
    side: int | None = None,
    repeats: int = 3,
    cache_dir: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> ChunkCalibration | None:
    """Times a kernel's forward and fwd+VJP at each candidate chunk size on this process's
    default device and keeps the fastest of each in ``chunk_sizes.json`` (see
    ``kipd.kernels.chunk_calibration``); returns them, or ``None`` where no candidate ran.
    Callable on any backend (on a CPU the result is kept but never used).

    Args:
      candidates: pairs per chunk to try; those above a call's pairs are dropped.
      name, depth: the kernel timed (``kipd.kernels.make``), NTK.
      image_shape: ``(H, W, C)`` of the random images timed.
      side: a call computes ``side x side`` pairs (default: the plan's block side for this
        kernel and shape, at most 32: 1024 ConvNet pairs, one block).
      repeats: timed calls per candidate (median), after a compile and a warm-up call.
      cache_dir: folder of ``chunk_sizes.json`` (default ``kipd.files.cache_dir()``).
      force: measure even where a calibration for this device is cached.
      log: told before measuring (seconds to a minute: two compiles per candidate).

    Example:
      >>> import tempfile
      >>> c = calibrate_chunk_sizes((1, 4), name="fc1", image_shape=(4, 4, 1), side=2,
      ...                           repeats=1, cache_dir=tempfile.mkdtemp())
      >>> c.forward_pairs in (1, 4), c.vjp_pairs in (1, 4), c.cached
      (True, True, False)
    """
    record = None if force else kipd.kernels.chunk_calibration(cache_dir=cache_dir)
    if record is not None:
        return _from_record(record)
    in_band = kipd.kernels.architecture(name, depth=depth).band(None)
    assert in_band is not None  # every architecture starts from images: a spatial band
    side = side or min(32, kipd.kernels.default_block_side(in_band, image_shape))
    tried = sorted({int(p) for p in candidates if 1 <= p <= side * side})
    if log is not None:
        shape = "x".join(map(str, image_shape))
        log(
            f"calibrating the kernel's chunk sizes on {device_kind()} (once per machine; "
            f"cached): {name} at {shape}, {side} x {side} pairs, chunks of {tried} pairs ..."
        )
    make = functools.partial(kipd.kernels.make, name, depth=depth)
    forward, vjp = _time_candidates(
        lambda pairs: make(pairs_per_block=pairs), _images(side, image_shape), tried, repeats
    )
    if not forward or not vjp:
        return None
    seconds = {"forward": forward, "vjp": vjp}
    winners = {kind: min(times, key=times.__getitem__) for kind, times in seconds.items()}
    store = functools.partial(kipd.kernels.store_chunk_calibration, cache_dir=cache_dir)
    store(winners, in_band, image_shape, seconds, pairs_per_call=side * side)
    return ChunkCalibration(winners["forward"], winners["vjp"], forward, vjp, side * side, False)


def _images(side: int, image_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Two batches of ``side`` random float32 images on the default device."""
    rng = np.random.default_rng(0)
    return tuple(
        jax.device_put(rng.standard_normal((side, *image_shape)).astype(np.float32))
        for _ in range(2)
    )


def device_kind() -> str:
    """The kind of this process's first device (``"NVIDIA H100 80GB HBM3"``, ``"cpu"``)."""
    device = jax.devices()[0]
    return str(getattr(device, "device_kind", device.platform))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_chunk_sizes(
    cache_dir: str | Path | None = None,
    wait_seconds: float = 900.0,
    log: Callable[[str], None] | None = _say,
) -> ChunkCalibration | None:
    """The calibrated chunk sizes of this machine's GPU, calibrating them the first time
    (:func:`calibrate_chunk_sizes`, tens of seconds once per machine, JAX and kipd
    version); ``None`` on a CPU (its static policy, untouched) or where no calibration
    could run. One process calibrates at a time (a lock in the cache folder); the others
    wait for its result, up to ``wait_seconds``, then use the static policy.

    Args:
      cache_dir: folder of ``chunk_sizes.json`` (default ``kipd.files.cache_dir()``).
      wait_seconds: how long to wait for another process's calibration.
      log: told when a calibration starts (default: a line on stderr).
    """
    if jax.default_backend() == "cpu":
        return None
    folder = Path(cache_dir if cache_dir is not None else files.cache_dir())
    deadline = time.monotonic() + wait_seconds
    while True:
        record = kipd.kernels.chunk_calibration(cache_dir=folder)
        if record is not None:
            return _from_record(record)
        if folder in _FAILED:  # tried in this process already: not again per block worker
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with files.exclusive_lock(folder / LOCK_FILE):
                calibration = calibrate_chunk_sizes(cache_dir=folder, log=log)
        except files.LockedError:
            if time.monotonic() > deadline:
                return None
            time.sleep(1.0)
            continue
        except OSError as err:  # an unwritable cache folder: the static sizes, said once
            calibration = None
            if log is not None:
                log(f"could not keep the chunk calibration in {folder} ({err}): static sizes")
        if calibration is None:
            _FAILED.add(folder)
        return calibration


_FAILED: set[Path] = set()
"""Cache folders whose calibration failed in this process (no candidate ran, or the file
could not be written): the static policy, without calibrating again for every worker."""
