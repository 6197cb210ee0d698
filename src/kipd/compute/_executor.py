"""What every executor offers: run the blocks of a plan and return their results in order."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from kipd.compute._plan import BlockPlan
from kipd.compute._worker import KernelSpec, Shared

OnBlock = Callable[[], None]
"""Called once for every finished block (progress bars; tests use it to act mid-step)."""


class ComputeError(RuntimeError):
    """The blocks of a step could not be computed (e.g. every worker of a cluster was
    lost). The message says what happened; a run continues from its last checkpoint with
    ``--resume``."""


class Executor(Protocol):
    """Runs the blocks of a :class:`BlockPlan` somewhere; see ``LocalExecutor`` and
    ``RayExecutor``. Both return the same numbers for the same plan.

    Optional: an executor that can keep each block's pullback between the two passes of
    ``value_and_grad`` offers ``keeps_pullbacks(spec, shared, plan) -> bool``, runs the
    phase ``"linearize"`` (``(values, pullback)`` per block; ``pullback`` ``None`` where
    it keeps none) and takes ``pullbacks=`` (in plan order) in its ``"vjp"`` map, which
    recomputes the blocks without one (the local executor does; Ray's workers recompute)."""

    name: str
    """``"local"`` or ``"ray"``."""

    def map(
        self,
        spec: KernelSpec,
        phase: str,
        shared: Shared,
        plan: BlockPlan,
        on_block: OnBlock | None = None,
    ) -> list[Any]:
        """``BlockWorker(spec).run(phase, shared, sizes, block)`` for every block of
        ``plan``, as NumPy arrays, in plan order."""
        ...

    @property
    def workers_alive(self) -> int:
        """Devices or workers that currently take blocks."""
        ...

    def close(self) -> None:
        """Releases what the executor started (processes, a local cluster)."""
        ...
