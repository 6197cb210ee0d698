"""The local executor: the blocks of a plan spread over this process's JAX devices."""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Sequence
from typing import Any

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

    Between the two passes of ``value_and_grad`` it keeps the blocks' pullbacks (their
    intermediates, on their devices) that fit ``pullback_memory``: each device keeps its
    blocks' pullbacks in plan order while the next one fits, and the VJP pass runs only the
    backward pass of those blocks and recomputes the others (the same forward again, so
    the gradient has the same bits as keeping every pullback or none).

    Args:
      devices: the JAX devices to use (default: every local device of the default backend).
      pullback_memory: bytes per device the kept pullbacks of one step may hold (0: always
        recompute). Default: a quarter of the device's memory (of the machine's RAM on a
        CPU).

    Example:
      >>> executor = LocalExecutor()
      >>> executor.workers_alive >= 1
      True
    """

    name = "local"

    def __init__(
        self, devices: Sequence[jax.Device] | None = None, pullback_memory: int | None = None
    ):
        self.devices = tuple(devices) if devices is not None else tuple(jax.local_devices())
        if not self.devices:
            raise ValueError("LocalExecutor needs at least one device")
        if pullback_memory is not None and pullback_memory < 0:
            raise ValueError(f"pullback_memory must be >= 0 bytes, got {pullback_memory}")
        self.pullback_memory = (
            _quarter_of_memory(self.devices[0]) if pullback_memory is None else pullback_memory
        )

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
        pullbacks: Sequence[Any] | None = None,
    ) -> list[Any]:
        """Every block of ``plan`` through ``phase``, in plan order (see ``Executor.map``);
        ``linearize`` gives ``(values, pullback)`` per block with the pullback left on its
        device (``None`` for a block whose pullback did not fit: it is recomputed in the
        VJP pass), and ``vjp`` given those ``pullbacks`` (in plan order) applies them and
        recomputes the others, to the same bits."""
        worker = block_worker(spec)
        sizes = (plan.support_block, plan.target_block)
        placed = [
            {k: jax.device_put(v, device) for k, v in shared.items()} for device in self.devices
        ]
        # A window of blocks in flight per device: enough to keep every device busy, and
        # few enough that progress is reported as blocks finish (on a CPU a dispatch can
        # run the block itself, so dispatching all first would report nothing until the end).
        window = 2 * len(self.devices)
        pending: collections.deque = collections.deque()
        results = []
        keeps = self._keeps(spec, shared, plan) if phase == "linearize" else None

        def collect() -> None:
            k, result = pending.popleft()
            if keeps is not None:
                values, pullback = result
                results.append((np.asarray(values), pullback if keeps[k] else None))
            else:
                results.append(jax.tree_util.tree_map(np.asarray, result))
            if on_block is not None:
                on_block()

        for k, block in enumerate(plan.blocks):
            pullback = None if pullbacks is None else pullbacks[k]
            device = placed[k % len(self.devices)]
            pending.append((k, worker.run(phase, device, sizes, block, pullback)))
            if len(pending) > window:
                collect()
        while pending:
            collect()
        return results

    def keeps_pullbacks(self, spec: KernelSpec, shared: Shared, plan: BlockPlan) -> bool:
        """Whether some block's pullback fits :attr:`pullback_memory` (``map`` keeps
        those that fit between the passes)."""
        return self.pullback_memory > 0 and any(self._keeps(spec, shared, plan))

    def _keeps(self, spec: KernelSpec, shared: Shared, plan: BlockPlan) -> list[bool]:
        """Per block of ``plan``, whether its pullback is kept: each device keeps its
        blocks' pullbacks, in plan order, while they fit :attr:`pullback_memory`."""
        worker = block_worker(spec)
        sizes = (plan.support_block, plan.target_block)
        held = [0] * len(self.devices)  # bytes kept on each device
        keeps = []
        for k, block in enumerate(plan.blocks):
            size = worker.pullback_bytes(shared, sizes, block)
            fits = held[k % len(self.devices)] + size <= self.pullback_memory
            if fits:
                held[k % len(self.devices)] += size
            keeps.append(fits)
        return keeps

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def device_summary(devices: Sequence[Any] | None = None) -> str:
    """The devices the local executor uses, in words: ``"2 CPU cores"`` (the cores this
    process may run on; ``"4 CPU devices on 2 cores"`` with forced host devices), or the
    count and kind of each accelerator, ``"1 x NVIDIA H100 80GB HBM3"``.

    Args:
      devices: JAX devices (default: :class:`LocalExecutor`'s, every local device of the
        default backend).

    Example:
      >>> device_summary().endswith(("core", "cores"))  # on a CPU
      True
    """
    devices = list(devices) if devices is not None else list(jax.local_devices())
    if all(device.platform == "cpu" for device in devices):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        cores = cores or os.cpu_count() or 1
        plural = "s" if cores != 1 else ""
        if len(devices) == 1:
            return f"{cores} CPU core{plural}"
        return f"{len(devices)} CPU devices on {cores} core{plural}"
    kinds = collections.Counter(
        str(getattr(device, "device_kind", device.platform)) for device in devices
    )
    return ", ".join(f"{count} x {kind}" for kind, count in kinds.items())


def _quarter_of_memory(device: jax.Device) -> int:
    """A quarter of a device's memory: what XLA reports for an accelerator, the machine's
    RAM for a CPU (0 where neither is known: pullbacks are then never kept)."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = {}
    total = stats.get("bytes_limit")
    if total is None and device.platform == "cpu" and hasattr(os, "sysconf"):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total or 0) // 4
