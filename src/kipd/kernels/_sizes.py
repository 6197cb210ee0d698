"""How much a kernel evaluation computes at once: one policy for the pairs a kernel
evaluates together (a chunk, ``make``'s ``pairs_per_block``) and for the ``B x B`` blocks
of images of the block plan (``kipd.compute``), both from a pair's band size.

A chunk should keep its working set in the CPU's cache or fill a GPU; a block of the plan
should be large against any executor's overhead. Both are counted in band entries, and
the entries of one pair's band (:func:`band_entries`) are computed here only.

On a GPU (any backend but the CPU) the chunk sizes come from a short calibration on the
device where one has run (``kipd.compute.calibrate_chunk_sizes``; ``kipd.compute`` runs it
once per machine before its first block): its winners, forward and fwd+VJP, are kept in
``chunk_sizes.json`` in :func:`kipd.files.cache_dir`, keyed by the device kind, the JAX
version and the kipd version (:func:`chunk_sizes_key`), as band entries per chunk, so they
hold for any image shape. Without one, the static policy below. On a CPU the calibration
is never read: its chunks are the static policy, bit for bit as before.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

import kipd
from kipd import files
from kipd.kernels._layers import pooled_radius

# Entries of the full-resolution stage's output per chunk of pairs. On a CPU the XLA
# stage's arrays should stay in cache (2**17 entries, 512 KiB: one ConvNet pair at 32x32,
# measured fastest); the fused C++ stage keeps its own tiles in cache, and bigger chunks
# spread the per-operation cost of the XLA layers after it (2**20: 4 unpooled pairs at
# 32x32, fwd+VJP ~10% faster than 1 pair; 64 pairs when the stage pools, its output being
# 18x smaller; at most 128 pairs: ConvVec's one-entry-per-pixel band measured faster at
# 128 than 1024). A GPU needs hundreds of pairs per chunk to fill its cores: 2**26 (256
# MiB per array) where no calibration has run on the machine (see the module docstring).
_CHUNK_ENTRIES = {"cpu": 2**17, "cpu-fused": 2**20, "gpu": 2**26}
_FUSED_CPU_MAX_PAIRS = 128

CHUNK_SIZES_FILE = "chunk_sizes.json"
"""The calibrated chunk sizes of this machine's accelerators, in :func:`kipd.files.cache_dir`
(beside the C++ kernel's build and ``timings.json``)."""
_PURPOSES = ("forward", "vjp")

_BLOCK_ENTRIES = 2**28
"""Band entries of a default block of the plan: about 1000 ConvNet pairs at 28x28, a few
seconds of one CPU core, tens of milliseconds of a GPU; large against any executor's
overhead."""


def band_entries(band: tuple[int, int], image_shape: tuple[int, ...]) -> int:
    """Entries of one pair's band: ``(2 R_h + 1)(2 R_w + 1) H W`` for a band of radius
    ``band = (R_h, R_w)`` over ``image_shape = (H, W, ...)``."""
    height, width = image_shape[:2]
    return (2 * band[0] + 1) * (2 * band[1] + 1) * height * width


def default_pairs_per_block(
    in_band: tuple[int, int],
    image_shape: tuple[int, ...],
    backend: str | None = None,
    fused: bool = False,
    pooled: bool = False,
    vjp: bool = False,
) -> int:
    """Pairs a kernel computes at once, one chunk (``make``'s default ``pairs_per_block``):
    the band entries per chunk of the backend (on a GPU its calibration, if any: see
    :func:`chunk_calibration`) divided by one pair's band entries.

    Args:
      in_band: the input band ``(R_h, R_w)`` of the network.
      image_shape: ``(H, W, C)``.
      backend: ``"cpu"``, ``"gpu"`` (``"cuda"``/``"rocm"``) or ``"tpu"``; default JAX's.
      fused: whether the full-resolution stage is a fused kernel (``implementation``
        ``"cpu"`` or ``"pallas"``).
      pooled: whether that fused stage also computes the 2x2 pooling after it (its
        output is then the pooled band, ``(R - 1) // 2`` offsets at half the size).
      vjp: the chunk of a kernel that is differentiated (``kipd.compute``'s block
        linearizations) rather than only evaluated. Only a GPU's calibration tells them
        apart (on an H200, 1024 ConvNet pairs at 32x32 were fastest forward, 64 fwd+VJP);
        on a CPU both are the static policy.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        entries = _CHUNK_ENTRIES["cpu-fused" if fused else "cpu"]
    else:
        entries = _accelerator_entries(backend, "vjp" if vjp else "forward")
    if fused and pooled:
        height, width = image_shape[:2]
        pooled_band = (pooled_radius(in_band[0]), pooled_radius(in_band[1]))
        per_pair = band_entries(pooled_band, (height // 2, width // 2))
    else:
        per_pair = band_entries(in_band, image_shape)
    pairs = max(1, entries // per_pair)
    if backend == "cpu" and fused:
        # A power of two: chunks then tile the usual batch sizes without padded pairs
        # (5 pairs per chunk would pad 16 columns to 20).
        pairs = min(2 ** int(math.log2(pairs)), _FUSED_CPU_MAX_PAIRS)
    return pairs


def default_block_side(in_band: tuple[int, int], image_shape: tuple[int, ...]) -> int:
    """The side ``B`` of a block of the plan (``kipd.compute``'s default ``block_size``):
    a power of two, 8 to 4096, whose ``B**2`` pairs hold about 2**28 band entries (32
    for a ConvNet at 28x28 or 32x32; 512 for FC and ConvVec, whose kernels keep one entry
    per pixel pair). A function of the shapes, never of a device: the plan is the server's,
    which may run on another device than its workers, and a run resumed on another
    machine cuts its steps into the same blocks (a GPU's calibration sets its chunks only).

    Args:
      in_band: the input band ``(R_h, R_w)`` of the network.
      image_shape: ``(H, W, C)``.
    """
    side = math.isqrt(_BLOCK_ENTRIES // band_entries(in_band, image_shape))
    return int(min(4096, max(8, 2 ** int(math.log2(max(side, 1))))))


def chunk_sizes_key(device: Any = None) -> str:
    """What a calibration of chunk sizes depends on: ``"platform:device kind|jax
    version|kipd version"`` of ``device`` (default: this process's first device)."""
    device = device if device is not None else jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return f"{device.platform}:{kind}|jax {jax.__version__}|kipd {kipd.__version__}"


def _cache_file(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir if cache_dir is not None else files.cache_dir()) / CHUNK_SIZES_FILE


def _read_all(path: Path) -> dict[str, Any]:
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or a damaged file: calibrate again
    return records if isinstance(records, dict) else {}


def chunk_calibration(
    device: Any = None, cache_dir: str | Path | None = None
) -> dict[str, Any] | None:
    """The chunk sizes calibrated on this machine for ``device``'s kind under this JAX and
    kipd (:func:`chunk_sizes_key`), or ``None``: never calibrated, calibrated under
    another version (a new JAX or kipd calibrates again), or a damaged record.

    Args:
      device: a JAX device (default: this process's first).
      cache_dir: the folder of ``chunk_sizes.json`` (default :func:`kipd.files.cache_dir`).

    Returns:
      The record :func:`store_chunk_calibration` wrote: ``forward_entries`` and
      ``vjp_entries`` (band entries per chunk, ints >= 1), ``forward_pairs``,
      ``vjp_pairs``, ``image_shape``, ``seconds`` (per purpose, candidate pairs -> seconds
      per timed call), ``pairs_per_call``, ``measured`` (ISO date).
    """
    record = _read_all(_cache_file(cache_dir)).get(chunk_sizes_key(device))
    if not isinstance(record, dict):
        return None
    for field in (f"{purpose}_{unit}" for purpose in _PURPOSES for unit in ("entries", "pairs")):
        value = record.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return None
    return record


def store_chunk_calibration(
    pairs: Mapping[str, int],
    in_band: tuple[int, int],
    image_shape: tuple[int, ...],
    seconds: Mapping[str, Mapping[int, float]],
    *,
    pairs_per_call: int,
    device: Any = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Keeps a calibration's winners for ``device``'s kind (see :func:`chunk_calibration`),
    beside the records of other device kinds and versions; returns the file.

    Args:
      pairs: ``{"forward": pairs, "vjp": pairs}``: the fastest pairs per chunk measured.
      in_band, image_shape: the kernel's input band ``(R_h, R_w)`` and the ``(H, W, C)``
        images it was measured on: the winners are kept as band entries per chunk
        (pairs x :func:`band_entries`, the unpooled band: no GPU stage pools), so that
        :func:`default_pairs_per_block` scales them to any image shape.
      seconds: per purpose, ``{candidate pairs: seconds of one timed call}``.
      pairs_per_call: the pairs of each timed call.
      device: the device measured (default: this process's first).
      cache_dir: as in :func:`chunk_calibration`.
    """
    per_pair = band_entries(in_band, image_shape)
    record: dict[str, Any] = {
        "image_shape": list(image_shape),
        "pairs_per_call": pairs_per_call,
        "measured": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": {k: {str(p): s for p, s in v.items()} for k, v in seconds.items()},
    }
    for purpose in _PURPOSES:
        record[f"{purpose}_pairs"] = int(pairs[purpose])
        record[f"{purpose}_entries"] = int(pairs[purpose]) * per_pair
    path = _cache_file(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = _read_all(path)  # another device kind or process may have added records
    records[chunk_sizes_key(device)] = record
    files.write_json(path, records)
    return path


def _accelerator_entries(backend: str, purpose: str) -> int:
    """Band entries per chunk on an accelerator: ``backend``'s first device's calibration
    for ``purpose`` (``"forward"`` or ``"vjp"``), else the static 2**26."""
    try:
        device = jax.devices(backend)[0]
    except RuntimeError:  # no such backend in this process: the static policy
        return _CHUNK_ENTRIES["gpu"]
    record = chunk_calibration(device)
    return int(record[f"{purpose}_entries"]) if record else _CHUNK_ENTRIES["gpu"]
