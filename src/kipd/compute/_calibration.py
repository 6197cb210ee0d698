"""What a kernel entry costs on this machine: measured once per machine and kernel, cached.

Every command that computes kernels says what it will cost before it starts (an
``estimate:`` line). The cost is a count of kernel entries (known from the shapes) times
the seconds per entry of a forward and of a VJP block, measured here the first time a
kernel and image shape are used on this machine (one block of each, compiled and timed:
seconds to a minute) and kept in ``timings.json`` in :func:`kipd.files.cache_dir`, so the
second time costs nothing.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax

import kipd
from kipd import files
from kipd.compute._estimate import estimate_step
from kipd.compute._grad import default_block_size
from kipd.compute._plan import TARGET_BLOCK
from kipd.compute._worker import KernelSpec

TIMINGS_FILE = "timings.json"


class EntryCost(NamedTuple):
    """Seconds per kernel entry on this machine's default device.

    Attributes:
      forward_seconds: one entry of a forward block.
      vjp_seconds: one entry of a VJP block (recompute and transpose).
      cached: whether it was read from the cache (``False``: measured just now).
    """

    forward_seconds: float
    vjp_seconds: float
    cached: bool


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def machine_key() -> str:
    """What timings depend on: the device, the CPU, the core count, JAX and kipd."""
    device = jax.devices()[0]
    return (
        f"{device.platform}:{device.device_kind}|{_cpu_model()}|{os.cpu_count()} cpus|"
        f"jax {jax.__version__}|kipd {kipd.__version__}"
    )


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: measure again


def entry_cost(
    spec: KernelSpec,
    image_shape: tuple[int, ...],
    support_size: int,
    log: Callable[[str], None] | None = None,
    keep_pullbacks: bool = False,
) -> EntryCost:
    """Seconds per forward and VJP kernel entry of ``spec`` on images of ``image_shape``
    against a support set of ``support_size``: from the cache, else measured (one block of
    each kind, compiled and timed once) and cached; ``log(line)`` is told before a
    measurement (to say why there is a pause). ``keep_pullbacks``: the VJP entry as an
    executor that keeps each block's pullback costs it (the backward pass alone; see
    :func:`estimate_step`).

    Example:
      >>> cost = entry_cost(KernelSpec("fc1"), (4, 4, 1), 10)
      >>> cost.forward_seconds > 0 and cost.vjp_seconds > 0
      True
    """
    image_shape = tuple(int(d) for d in image_shape)
    side = default_block_size(spec, image_shape)
    block = min(support_size, side)
    key = json.dumps([machine_key(), spec._asdict(), image_shape, block, keep_pullbacks])
    path = files.cache_dir() / TIMINGS_FILE
    cached = _read(path).get(key)
    if cached is not None:
        return EntryCost(cached["forward_seconds"], cached["vjp_seconds"], cached=True)
    if log is not None:
        log(f"timing the {spec.name} kernel on this machine (once; cached for next time) ...")
    # One support block against one whole target block: the shapes a run's blocks have.
    estimate = estimate_step(
        spec, image_shape, block, side, repeats=1, keep_pullbacks=keep_pullbacks
    )
    entries = estimate.plan.target_block * estimate.plan.support_block
    cost = EntryCost(
        estimate.forward_seconds[TARGET_BLOCK] / entries,
        estimate.vjp_seconds[TARGET_BLOCK] / entries,
        cached=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    timings = _read(path)  # another process may have added entries meanwhile
    timings[key] = {"forward_seconds": cost.forward_seconds, "vjp_seconds": cost.vjp_seconds}
    files.write_json(path, timings)
    return cost


DAY_SECONDS = 86400.0
"""A command estimated to take longer than this stops and asks for ``--yes``."""


def format_duration(seconds: float) -> str:
    """``"42.0 s"``, ``"12.5 min"``, ``"3.2 h"`` or ``"11.1 days"``.

    Example:
      >>> format_duration(90), format_duration(5400), format_duration(10 * 86400)
      ('90.0 s', '90.0 min', '10.0 days')
    """
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class OverBudgetError(ValueError):
    """A command would run longer than its budget; the message gives the estimate, the
    flag that starts it anyway and cheaper settings."""


class Estimate(NamedTuple):
    """What a piece of kernel work will cost on this machine.

    Attributes:
      what: the work in words (``"1000 KIP steps of 10 x 5000"``).
      parts: ``{part: seconds}`` (e.g. steps and evaluations).
      entries: how much work: kernel entries computed in all (forward and VJP), or
        another ``unit``.
      unit: what ``entries`` counts.
    """

    what: str
    parts: dict[str, float]
    entries: int
    unit: str = "kernel entries"

    @property
    def seconds(self) -> float:
        """The whole work's wall time."""
        return sum(self.parts.values())

    def line(self) -> str:
        """One line beginning ``estimate:``."""
        parts = ", ".join(f"{name} {format_duration(s)}" for name, s in self.parts.items())
        detail = f" ({parts})" if len(self.parts) > 1 else ""
        return (
            f"estimate: {self.what}: {self.entries:,} {self.unit}, about "
            f"{format_duration(self.seconds)} on this machine{detail}"
        )

    def announce(
        self, log: Callable[[str], None] | None, budget_seconds: float | None, cheaper: str
    ) -> None:
        """Says :meth:`line` to ``log`` (if any), then checks the budget (:meth:`check`)."""
        if log is not None:
            log(self.line())
        self.check(budget_seconds, cheaper)

    def check(self, budget_seconds: float | None, cheaper: str) -> None:
        """Raises :class:`OverBudgetError` if the work exceeds ``budget_seconds``
        (``None``: no budget)."""
        if budget_seconds is not None and self.seconds > budget_seconds:
            raise OverBudgetError(
                f"{self.line()}: more than {format_duration(budget_seconds)}, so it was not "
                f"started. Pass --yes to start it anyway, or make it cheaper: {cheaper}"
            )


def kernel_estimate(
    what: str,
    spec: KernelSpec,
    image_shape: tuple[int, ...],
    support_size: int,
    parts: dict[str, int],
    *,
    workers: int = 1,
    log: Callable[[str], None] | None = None,
) -> Estimate:
    """What forward kernel matrices cost on this machine (:func:`entry_cost`).

    Args:
      what: the work in words.
      spec: the kernel.
      image_shape: ``(H, W, C)``.
      support_size: the columns of the matrices (the block shape the timing uses).
      parts: ``{part: kernel entries}``.
      workers: workers sharing the blocks.
      log: told when the kernel is being timed.

    Example:
      >>> kernel_estimate("evaluate", KernelSpec("fc1"), (4, 4, 1), 10, {"test": 1000}).entries
      1000
    """
    cost = entry_cost(spec, image_shape, support_size, log)
    return Estimate(
        what=what,
        parts={name: entries * cost.forward_seconds / workers for name, entries in parts.items()},
        entries=sum(parts.values()),
    )
