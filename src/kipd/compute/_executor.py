"""What every executor offers: run the blocks of a plan and return their results in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

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
    ``RayExecutor``. Both return the same bits for the same plan.

    Phases: ``"forward"`` (a block's kernel values), ``"linearize"`` (``(values,
    pullback)``: the values of the gradient path, with the pullback kept where the
    executor keeps it, ``None`` elsewhere) and ``"vjp"``. An executor that keeps pullbacks
    takes them back as ``pullbacks=`` (in plan order) in its ``"vjp"`` map and recomputes
    the blocks without one by the same linearization (the local executor does, where
    they fit its memory; Ray's actors keep none)."""

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

    def __enter__(self) -> Executor:
        """The executor itself; :meth:`close` on leaving the block."""
        ...

    def __exit__(self, *exc: Any) -> None: ...

    def close(self) -> None:
        """Releases what the executor started (processes, a local cluster)."""
        ...
