"""The Ray executor: the blocks of a plan on a pool of Ray actors (paper §2.1's workers).

Each actor holds one :class:`BlockWorker` per kernel (compiled once) and one GPU
(``num_gpus=1``) or one CPU. A call puts the step's arrays in Ray's object store once;
an actor fetches them on its first block of the call and keeps them on its device. The
server keeps at most ``in_flight`` blocks per actor and hands the next block of the
queue to whichever actor finishes, so fast workers take more blocks. An actor that dies
has its unfinished blocks handed to the others; since results are assembled in plan
order, the step's numbers do not change. With no actor left the call raises
:class:`ComputeError`.
"""

from __future__ import annotations

import collections
import os
import warnings
from typing import Any

import numpy as np

from kipd.compute._executor import ComputeError, OnBlock
from kipd.compute._plan import BlockPlan
from kipd.compute._worker import BlockWorker, KernelSpec, Shared

INSTALL_HINT = "the Ray executor needs Ray: pip install 'kipd[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:  # an optional extra
        raise ImportError(INSTALL_HINT) from err
    return ray


class _Actor:
    """The body of one Ray actor (wrapped with ``ray.remote`` by :class:`RayExecutor`)."""

    def __init__(self) -> None:
        self._workers: dict[KernelSpec, BlockWorker] = {}
        self._shared_id: str | None = None
        self._shared: dict[str, Any] = {}
        self._x64 = False

    def pid(self) -> int:
        return os.getpid()

    def run(
        self, spec: KernelSpec, phase: str, shared_ref: list, sizes: tuple[int, int], block: Any
    ) -> Any:
        import jax
        import ray

        # The reference comes wrapped in a list so that Ray does not resolve it for every
        # block: the arrays are fetched and put on the device once per call.
        (ref,) = shared_ref
        if ref.hex() != self._shared_id:
            arrays = ray.get(ref)
            x64 = any(np.asarray(v).dtype == np.float64 for v in arrays.values())
            with jax.enable_x64(x64):
                self._shared = {k: jax.device_put(v) for k, v in arrays.items()}
            self._shared_id, self._x64 = ref.hex(), x64
        if spec not in self._workers:
            self._workers[spec] = BlockWorker(spec)
        with jax.enable_x64(self._x64):
            value = self._workers[spec].run(phase, self._shared, sizes, block)
            if phase == "linearize":
                # An actor holds nothing between the passes (a lost one costs nothing): the
                # block's VJP recomputes the same linearization, wherever it runs.
                value = (value[0], None)
            return jax.tree_util.tree_map(np.asarray, value)


class RayExecutor:
    """Runs blocks on a pool of Ray actors, locally or on a cluster.

    Args:
      address: a running cluster to join (``"auto"``, ``"ray://host:10001"``,
        ``"host:6379"``); ``None`` starts a local Ray instance, stopped by :meth:`close`.
      workers: actors in the pool (default: one per GPU of the cluster, else one per CPU).
      in_flight: blocks queued per actor at a time (2 hides the round trip).
      num_cpus: CPUs of a local instance (``None``: all); ignored with ``address``.

    Raises:
      ImportError: Ray is not installed (``pip install 'kipd[ray]'``).
      ValueError: ``workers`` or ``in_flight`` < 1, or the cluster cannot hold the pool.

    Example:
      >>> with RayExecutor(workers=2) as executor:  # doctest: +SKIP
      ...     k_ts = kernel_matrix(KernelSpec("convnet"), test, support, executor=executor)
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        in_flight: int = 2,
        num_cpus: int | None = None,
    ):
        ray = _import_ray()
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}: pass e.g. --workers 2")
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight}")
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            try:
                with warnings.catch_warnings():
                    # Ray forks only to exec its own processes, which JAX's warning about
                    # os.fork in a multithreaded process does not concern.
                    warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                    ray.init(
                        address=address,
                        num_cpus=None if address else num_cpus,
                        include_dashboard=False,
                        logging_level="ERROR",
                        configure_logging=False,
                    )
            except ConnectionError as err:
                raise ValueError(
                    f"cannot join the Ray cluster at {address!r} ({err}): start it with "
                    "'ray start --head' on the head node, or leave --ray-address out to run "
                    "a local instance"
                ) from err
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        per_worker = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        available = gpus or cpus
        workers = available if workers is None else workers
        if workers > available:
            self.close()
            kind = "GPUs" if gpus else "CPUs"
            raise ValueError(
                f"{workers} workers asked, but the cluster has {available} {kind}: pass "
                f"--workers {available} or fewer, or add nodes to the cluster"
            )
        actor = ray.remote(max_restarts=0, max_task_retries=0, **per_worker)(_Actor)
        self.workers = [actor.remote() for _ in range(workers)]
        self._alive = list(self.workers)
        self.in_flight = in_flight
        self.device_kind = "GPU" if gpus else "CPU"

    @property
    def workers_alive(self) -> int:
        return len(self._alive)

    def pids(self) -> list[int]:
        """Process ids of the live actors (to watch or stop one)."""
        return self._ray.get([actor.pid.remote() for actor in self._alive])

    def map(
        self,
        spec: KernelSpec,
        phase: str,
        shared: Shared,
        plan: BlockPlan,
        on_block: OnBlock | None = None,
    ) -> list[Any]:
        ray = self._ray
        died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
        shared_ref = [ray.put({k: np.asarray(v) for k, v in shared.items()})]
        sizes = (plan.support_block, plan.target_block)
        queue = collections.deque(range(len(plan.blocks)))
        results: list[Any] = [None] * len(plan.blocks)
        running: dict[Any, tuple[Any, int]] = {}
        load: collections.Counter[Any] = collections.Counter()
        while queue or running:
            if not self._alive:
                raise ComputeError(
                    f"every Ray worker was lost during a {phase} pass ({len(queue)} of "
                    f"{len(plan.blocks)} blocks not done); restart the cluster's workers and "
                    "continue the run from its last checkpoint with --resume"
                )
            for actor in self._alive:
                while queue and load[actor] < self.in_flight:
                    index = queue.popleft()
                    ref = actor.run.remote(spec, phase, shared_ref, sizes, plan.blocks[index])
                    running[ref] = (actor, index)
                    load[actor] += 1
            (ready,), _ = ray.wait(list(running), num_returns=1)
            actor, index = running.pop(ready)
            load[actor] -= 1
            try:
                results[index] = ray.get(ready)
            except died:
                if actor in self._alive:
                    self._alive.remove(actor)
                    warnings.warn(
                        f"a Ray worker died; its blocks go to the {len(self._alive)} others",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                queue.appendleft(index)
                continue
            if on_block is not None:
                on_block()
        return results

    def close(self) -> None:
        """Stops the actors, and the local Ray instance if this executor started it."""
        for actor in getattr(self, "workers", []):
            self._ray.kill(actor)
        self.workers, self._alive = [], []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
