"""Cost before commitment: a step's blocks timed on this machine, and a model of a run.

A step's cost is the sum of its blocks' costs plus the server's loss and a per-block
executor overhead. :func:`estimate_step` compiles and times one block of each kind on
random images of the run's shapes (a few seconds), reads the compiled VJP's memory
footprint, and returns a :class:`StepEstimate` whose :meth:`StepEstimate.step_seconds`
models ``N`` workers: the blocks divide among them, the overhead and the server do not.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import numpy as np

from kipd.compute._executor import Executor
from kipd.compute._grad import LossFn, _server_vjp, default_block_size
from kipd.compute._plan import SUPPORT_BLOCK, TARGET_BLOCK, Block, BlockPlan, plan_blocks
from kipd.compute._worker import BlockWorker, KernelSpec


class StepEstimate(NamedTuple):
    """The measured cost of one step's blocks and the model built on it.

    Attributes:
      plan: the step's :class:`BlockPlan`.
      forward_seconds: ``{kind: seconds}`` of one forward block of each kind.
      vjp_seconds: ``{kind: seconds}`` of one VJP block of each kind.
      server_seconds: the loss and ``dL/dK`` on the server, once per step.
      overhead_seconds: the executor's cost per block, not shared among workers.
      compile_seconds: compiling the block functions (once per worker).
      peak_bytes_per_worker: a worker's peak memory: the step's arrays plus the VJP
        block's buffers (XLA's compiled memory analysis).
    """

    plan: BlockPlan
    forward_seconds: dict[str, float]
    vjp_seconds: dict[str, float]
    server_seconds: float
    overhead_seconds: float
    compile_seconds: float
    peak_bytes_per_worker: int

    def compute_seconds(self) -> float:
        """Block compute of one step, forward and VJP, on one worker."""
        return sum(
            self.plan.count(kind) * (self.forward_seconds[kind] + self.vjp_seconds[kind])
            for kind in (SUPPORT_BLOCK, TARGET_BLOCK)
        )

    def step_seconds(self, workers: int = 1) -> float:
        """Modelled wall time of one step on ``workers`` equal workers."""
        blocks = 2 * len(self.plan.blocks)  # forward and VJP
        return (
            self.server_seconds + blocks * self.overhead_seconds + self.compute_seconds() / workers
        )

    def forward_pair_seconds(self) -> float:
        """Seconds per kernel entry of a forward target block (evaluations cost this)."""
        pairs = self.plan.target_block * self.plan.support_block
        return self.forward_seconds[TARGET_BLOCK] / pairs

    def entries(self) -> int:
        """Kernel entries per step in each pass (forward or VJP), padding included."""
        return self.plan.entries(SUPPORT_BLOCK) + self.plan.entries(TARGET_BLOCK)


def _timed(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def block_overhead(executor: Executor, blocks: int = 32) -> float:
    """Seconds an executor adds per block: the wall time of trivial blocks (a 1x1 FC
    kernel of 2x2 images) divided by their number, after a warm-up call."""
    spec = KernelSpec("fc1")
    plan = plan_blocks(1, blocks, 1, support_blocks=False)
    images = np.ones((blocks, 2, 2, 1), np.float32)
    shared = {"support": images[:1], "targets": images}
    executor.map(spec, "forward", shared, plan)
    started = time.perf_counter()
    executor.map(spec, "forward", shared, plan)
    return (time.perf_counter() - started) / blocks


def estimate_step(
    spec: KernelSpec,
    image_shape: tuple[int, ...],
    support_size: int,
    target_size: int,
    *,
    block_size: int | None = None,
    loss_fn: LossFn | None = None,
    loss_args: tuple[Any, ...] = (),
    overhead_seconds: float = 0.0,
    repeats: int = 2,
    dtype: Any = np.float32,
    keep_pullbacks: bool = False,
) -> StepEstimate:
    """Times one block of each kind of a step on this process's default device.

    Args:
      spec: the kernel.
      image_shape: ``(H, W, C)``.
      support_size: ``n_s``.
      target_size: ``n_t`` targets per step.
      block_size: ``B`` (default: :func:`default_block_size`).
      loss_fn: the server's loss ``loss_fn(k_ss, k_ts, *loss_args)``, timed if given.
      loss_args: example arguments of ``loss_fn`` (their shapes matter).
      overhead_seconds: per-block executor overhead (see :func:`block_overhead`).
      repeats: timed runs per block (the median is kept), after one warm-up.
      dtype: image dtype.
      keep_pullbacks: time the step as an executor that keeps each block's pullback
        between the passes does (the local one): the kept pullback's backward pass as the
        VJP block (else the linearization again and the backward pass), and count the
        pullbacks of a worker's blocks in its memory. The forward block is the
        linearization either way.

    Returns:
      The :class:`StepEstimate`.
    """
    block_size = block_size or default_block_size(spec, image_shape)
    plan = plan_blocks(support_size, target_size, block_size)
    rng = np.random.default_rng(0)
    support = rng.standard_normal((plan.padded_support_size, *image_shape)).astype(dtype)
    targets = rng.standard_normal((plan.padded_target_size, *image_shape)).astype(dtype)
    shared = {
        "support": support,
        "targets": targets,
        "d_k_ss": np.ones((len(support),) * 2, dtype),
        "d_k_ts": np.ones((len(targets), len(support)), dtype),
    }
    shared = {k: jax.device_put(v) for k, v in shared.items()}
    sizes = (plan.support_block, plan.target_block)
    started = time.perf_counter()
    worker = BlockWorker(spec)
    forward, vjp = {}, {}
    for kind in (SUPPORT_BLOCK, TARGET_BLOCK):
        block = Block(kind, 0, 0)
        # Every executor's forward block is the linearization; an executor that keeps no
        # pullback recomputes it in the VJP block.
        forward[kind] = _timed(lambda: worker.linearize(shared, sizes, block), repeats)
        kept = worker.linearize(shared, sizes, block)[1] if keep_pullbacks else None
        vjp[kind] = _timed(lambda: worker.vjp(shared, sizes, block, kept), repeats)
        kept = None  # freed before the next kind's blocks
    timing = (1 + repeats) * (sum(forward.values()) + sum(vjp.values()))
    compile_seconds = max(0.0, time.perf_counter() - started - timing)
    server = 0.0
    if loss_fn is not None:
        k_ss = np.ones((support_size, support_size), dtype)
        k_ts = np.ones((target_size, support_size), dtype)
        server = _timed(lambda: _server_vjp(loss_fn)(k_ss, k_ts, loss_args), repeats)
    array_bytes = sum(int(np.prod(v.shape)) * v.dtype.itemsize for v in shared.values())
    peak = array_bytes + worker.vjp_peak_bytes(shared, sizes, Block(TARGET_BLOCK, 0, 0))
    if keep_pullbacks:  # every block's pullback is held until the VJP pass
        peak += sum(worker.pullback_bytes(shared, sizes, block) for block in plan.blocks)
    return StepEstimate(plan, forward, vjp, server, overhead_seconds, compile_seconds, peak)
