"""Pins kipd.kernels' public names: changing them is a visible decision."""

import kipd.kernels


def test_public_names():
    assert kipd.kernels.__all__ == [
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
    public = {name for name in dir(kipd.kernels) if not name.startswith("_")}
    assert public == set(kipd.kernels.__all__)
