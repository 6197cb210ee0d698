"""The local executor: the blocks of a plan spread over this process's JAX devices."""

from __future__ import annotations

import collections

import functools
from typing import Any, Sequence

import jax
import numpy as np

from kipd.compute._executor import OnBlock
from kipd.compute._plan import BlockPlan
from kipd.compute._worker import BlockWorker, KernelSpec, Shared


@functools.cache
def block_worker(spec: KernelSpec) -> BlockWorker:
    """The process's one :class:`BlockWorker` of a spec (compiled functions are shared)."""
    return BlockWorker(spec)


class LocalExecutor:
    """Runs blocks in this process, block ``k`` on device ``k mod D``.

    The step's arrays are copied to each device once per call; blocks are dispatched
    asynchronously, so the devices (several GPUs of one host, or forced CPU devices)
    compute at the same time, and results are gathered in plan order. No extra processes.

    Args:
      devices: the JAX devices to use (default: every local device of the default backend).

    Example:
      >>> executor = LocalExecutor()
      >>> executor.workers_alive >= 1
      True
    """

    name = "local"

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = tuple(devices) if devices is not None else tuple(jax.local_devices())
        if not self.devices:
            raise ValueError("LocalExecutor needs at least one device")

    @property
    def workers_alive(self) -> int:
        return len(self.devices)

    def map(
        self,
        spec: KernelSpec,
        phase: str,
        shared: Shared,
        plan: BlockPlan,
        on_block: OnBlock | None = None,
    ) -> list[Any]:
        worker = block_worker(spec)
        sizes = (plan.support_block, plan.target_block)
        placed = [{k: jax.device_put(v, device) for k, v in shared.items()} for device in self.devices]
        # A window of blocks in flight per device: enough to keep every device busy, and
        # few enough that progress is reported as blocks finish (on a CPU a dispatch can
        # run the block itself, so dispatching all first would report nothing until the end).
        window = 2 * len(self.devices)
        pending: collections.deque = collections.deque()
        results = []

        def collect() -> None:
            results.append(jax.tree_util.tree_map(np.asarray, pending.popleft()))
            if on_block is not None:
                on_block()

        for k, block in enumerate(plan.blocks):
            pending.append(worker.run(phase, placed[k % len(self.devices)], sizes, block))
            if len(pending) > window:
                collect()
        while pending:
            collect()
        return results

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
