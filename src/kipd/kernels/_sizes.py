"""How much a kernel evaluation computes at once: one policy for the pairs a kernel
evaluates together (a chunk, ``make``'s ``pairs_per_block``) and for the ``B x B`` blocks
of images of the block plan (``kipd.compute``), both from a pair's band size.

A chunk should keep its working set in the CPU's cache or fill a GPU; a block of the plan
should be large against any executor's overhead. Both are counted in band entries, and
the entries of one pair's band (:func:`band_entries`) are computed here only.
"""

from __future__ import annotations

import math

import jax

from kipd.kernels._layers import pooled_radius

# Entries of the full-resolution stage's output per chunk of pairs. On a CPU the XLA
# stage's arrays should stay in cache (2**17 entries, 512 KiB: one ConvNet pair at 32x32,
# measured fastest); the fused C++ stage keeps its own tiles in cache, and bigger chunks
# spread the per-operation cost of the XLA layers after it (2**20: 4 unpooled pairs at
# 32x32, fwd+VJP ~10% faster than 1 pair; 64 pairs when the stage pools, its output being
# 18x smaller; at most 128 pairs: ConvVec's one-entry-per-pixel band measured faster at
# 128 than 1024). A GPU needs hundreds of pairs per chunk to fill its cores (2**26, 256
# MiB per array).
_CHUNK_ENTRIES = {"cpu": 2**17, "cpu-fused": 2**20, "gpu": 2**26}
_FUSED_CPU_MAX_PAIRS = 128

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
) -> int:
    """Pairs a kernel computes at once, one chunk (``make``'s default ``pairs_per_block``).

    Args:
      in_band: the input band ``(R_h, R_w)`` of the network.
      image_shape: ``(H, W, C)``.
      backend: ``"cpu"``, ``"gpu"`` (``"cuda"``/``"rocm"``) or ``"tpu"``; default JAX's.
      fused: whether the full-resolution stage is a fused kernel (``implementation``
        ``"cpu"`` or ``"pallas"``).
      pooled: whether that fused stage also computes the 2x2 pooling after it (its
        output is then the pooled band, ``(R - 1) // 2`` offsets at half the size).
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        entries = _CHUNK_ENTRIES["cpu-fused" if fused else "cpu"]
    else:
        entries = _CHUNK_ENTRIES["gpu"]
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
    per pixel pair).

    Args:
      in_band: the input band ``(R_h, R_w)`` of the network.
      image_shape: ``(H, W, C)``.
    """
    side = math.isqrt(_BLOCK_ENTRIES // band_entries(in_band, image_shape))
    return int(min(4096, max(8, 2 ** int(math.log2(max(side, 1))))))
