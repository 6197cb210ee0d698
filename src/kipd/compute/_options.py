"""Where kernel blocks run, as options: a runtime choice, never part of a run's config.

The same run gives the same numbers on any executor, so the executor, its worker count
and its cluster address are given to each command (``--executor``, ``--workers``,
``--ray-address``) and are not recorded in a run directory: a run started on a cluster
resumes on a laptop and the other way round.
"""

from __future__ import annotations

import dataclasses

from kipd.compute._executor import Executor
from kipd.compute._local import LocalExecutor
from kipd.compute._ray import RayExecutor

EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    """Where the kernel blocks of a command run (same results everywhere).

    Attributes:
      executor: ``local`` (this process's devices: every GPU of this machine, or the CPU)
        or ``ray`` (a pool of Ray workers, one per GPU or CPU; pip install 'kipd[ray]').
      ray_address: a running Ray cluster to join (``auto``, ``host:6379``,
        ``ray://host:10001``); ``None`` starts a local Ray instance.
      workers: Ray workers; ``None`` means one per GPU of the cluster, else one per CPU.

    Example:
      >>> with ExecutorConfig().make() as executor:
      ...     executor.name
      'local'
    """

    executor: str = dataclasses.field(default="local", metadata={"cli": {"choices": EXECUTORS}})
    ray_address: str | None = dataclasses.field(
        default=None, metadata={"cli": {"metavar": "ADDRESS"}}
    )
    workers: int | None = dataclasses.field(default=None, metadata={"cli": {"metavar": "N"}})

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(
                f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}: pass "
                "--executor local (this machine's devices) or --executor ray"
            )
        if self.workers is not None and not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(
                f"workers must be an integer >= 1, got {self.workers!r}: pass e.g. --workers 2, "
                "or leave it out for one per GPU (else CPU)"
            )
        if self.executor != "ray" and (self.ray_address is not None or self.workers is not None):
            raise ValueError(
                "--ray-address and --workers are options of the Ray executor: add --executor ray"
            )

    def make(self) -> Executor:
        """A new executor of this kind; use it as a context manager (``close`` releases
        what it started)."""
        if self.executor == "local":
            return LocalExecutor()
        return RayExecutor(self.ray_address, workers=self.workers)
