"""Exact NNGP / NTK kernels of infinitely wide FC, ConvVec and ConvNet networks.

``make(name)`` gives a jit-compiled, differentiable ``kernel(x1, x2=None, get="ntk")``;
its full-resolution stage runs as XLA layer maps or a fused kernel (``IMPLEMENTATIONS``).
``architecture(name)`` gives the same network as a :class:`Layer`, whose ``init`` /
``apply`` are the finite network used for transfer; ``random_features(name, width=,
networks=, get=)`` gives features of random finite networks whose inner products estimate
the NNGP or the NTK (``KERNEL_OUTPUTS``). ``default_pairs_per_block`` and
``default_block_side`` are the one size policy of the pairs a kernel computes at once and
of ``kipd.compute``'s blocks of images;
``chunk_calibration`` / ``store_chunk_calibration`` read and keep a GPU's calibrated chunks.
"""

from kipd.kernels._architectures import ARCHITECTURES, architecture
from kipd.kernels._features import FeatureFn, feature_count, random_features
from kipd.kernels._layers import (
    Layer,
    avg_pool,
    conv,
    dense,
    flatten,
    global_avg_pool,
    normalization,
    relu,
    serial,
)
from kipd.kernels._make import IMPLEMENTATIONS, KERNEL_OUTPUTS, make
from kipd.kernels._sizes import (
    chunk_calibration,
    default_block_side,
    default_pairs_per_block,
    store_chunk_calibration,
)
from kipd.kernels._state import KernelState

__all__ = [
    "ARCHITECTURES",
    "IMPLEMENTATIONS",
    "KERNEL_OUTPUTS",
    "KernelState",
    "Layer",
    "architecture",
    "avg_pool",
    "chunk_calibration",
    "conv",
    "default_block_side",
    "default_pairs_per_block",
    "dense",
    "FeatureFn",
    "feature_count",
    "flatten",
    "global_avg_pool",
    "make",
    "normalization",
    "random_features",
    "relu",
    "serial",
    "store_chunk_calibration",
]
