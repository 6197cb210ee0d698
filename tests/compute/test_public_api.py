"""Pins kipd.compute' public names: changing them is a visible decision."""

import kipd.compute


def test_public_names():
    assert kipd.compute.__all__ == [
        "DAY_SECONDS",
        "EXECUTORS",
        "Block",
        "BlockPlan",
        "BlockWorker",
        "ChunkCalibration",
        "ComputeError",
        "EntryCost",
        "Estimate",
        "Executor",
        "ExecutorConfig",
        "KernelSpec",
        "LocalExecutor",
        "OverBudgetError",
        "RayExecutor",
        "StepEstimate",
        "block_overhead",
        "calibrate_chunk_sizes",
        "default_block_size",
        "device_summary",
        "entry_cost",
        "estimate_step",
        "format_duration",
        "kernel_estimate",
        "kernel_matrix",
        "plan_blocks",
        "value_and_grad",
    ]
    public = {name for name in dir(kipd.compute) if not name.startswith("_")}
    assert public == set(kipd.compute.__all__)
