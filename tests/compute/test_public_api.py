"""Pins kipd.compute' public names: changing them is a visible decision."""

import kipd.compute


def test_public_names():
    assert kipd.compute.__all__ == [
        "EXECUTORS",
        "Block",
        "BlockPlan",
        "BlockWorker",
        "ComputeError",
        "Executor",
        "ExecutorConfig",
        "KernelSpec",
        "LocalExecutor",
        "RayExecutor",
        "StepEstimate",
        "block_overhead",
        "default_block_size",
        "estimate_step",
        "kernel_matrix",
        "plan_blocks",
        "value_and_grad",
    ]
    public = {name for name in dir(kipd.compute) if not name.startswith("_")}
    assert public == set(kipd.compute.__all__)
