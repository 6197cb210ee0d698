"""The block plan of paper §2.1 and the executors that run it.

``value_and_grad`` computes a loss of ``K_ss`` and ``K_ts`` and its gradient block by
block: forward blocks of the kernel, the loss and ``dL/dK`` on the server, then VJP
blocks pulled back with their block of ``dL/dK``, summed. ``kernel_matrix`` computes a
large kernel matrix by blocks. Where the blocks run is the executor's business: the
:class:`LocalExecutor` spreads them over this process's devices; the
:class:`RayExecutor` (``pip install 'kipd[ray]'``) over a pool of Ray actors on one
machine or a cluster. Every executor gives the same numbers as ``jax.grad`` of the whole
loss. ``ExecutorConfig`` names an executor as options (``--executor``, ``--workers``,
``--ray-address``). ``estimate`` measures a block and predicts a run's time and memory (``--plan``).
``device_summary`` names the devices the local executor uses; ``calibrate_chunk_sizes``
times a GPU's chunk sizes (run once per machine before the first block, then cached).
"""

from kipd.compute._calibration import (
    DAY_SECONDS,
    EntryCost,
    Estimate,
    OverBudgetError,
    entry_cost,
    format_duration,
    kernel_estimate,
)
from kipd.compute._chunk_sizes import ChunkCalibration, calibrate_chunk_sizes
from kipd.compute._estimate import StepEstimate, block_overhead, estimate_step
from kipd.compute._executor import ComputeError, Executor
from kipd.compute._grad import default_block_size, kernel_matrix, value_and_grad
from kipd.compute._local import LocalExecutor, device_summary
from kipd.compute._options import EXECUTORS, ExecutorConfig
from kipd.compute._plan import Block, BlockPlan, plan_blocks
from kipd.compute._ray import RayExecutor
from kipd.compute._worker import BlockWorker, KernelSpec

__all__ = [
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
