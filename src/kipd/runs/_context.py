"""What a run is given besides its config: where its status lines go, where its kernel
blocks run, and its dataset (loaded with a word to the log).

Every command of this layer (a KIP or Label Solve run, ``evaluate``, ``--plan``) takes the
same ``log`` and ``executor`` arguments; their meaning lives here once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from kipd import compute, data
from kipd.runs._config import KipConfig, LabelSolveConfig
from kipd.runs._features import threshold_note

Log = Callable[[str], None]
"""``log(line)``: where a command's status lines go (``kipd`` prints them on stderr)."""


def say(log: Log | None, line: str) -> None:
    """Says ``line`` to ``log``; nothing without one."""
    if log is not None:
        log(line)


@contextlib.contextmanager
def executor_for(executor: compute.Executor | None) -> Iterator[compute.Executor]:
    """The caller's executor (left open), or a local one for this call."""
    if executor is not None:
        yield executor
        return
    with compute.LocalExecutor() as local:
        yield local


def say_start(
    log: Log | None,
    executor: compute.Executor,
    config: KipConfig | LabelSolveConfig,
    dataset: data.Dataset,
) -> None:
    """Says, at a run's start, where its blocks run (:func:`say_devices`) and, for a run on
    features whose feature count is near its support size, the note that names better maps
    (:func:`kipd.runs._features.threshold_note`)."""
    say_devices(log, executor)
    if config.features is not None:
        note = threshold_note(config, dataset.image_shape, dataset.num_classes)
        if note is not None:
            say(log, note)


def say_devices(log: Log | None, executor: compute.Executor) -> None:
    """Says where a command's kernel blocks run: this process's devices (kind and count)
    or a Ray pool's workers."""
    if isinstance(executor, compute.LocalExecutor):
        say(log, f"running on {compute.device_summary()}")
    else:
        say(log, f"running on {executor.workers_alive} Ray workers")


def load_dataset(config: KipConfig | LabelSolveConfig, log: Log | None) -> data.Dataset:
    """The dataset of a config, said first (loading a large one takes seconds)."""
    say(log, f"loading {config.dataset} ...")
    return data.load(config.dataset, data_dir=config.data_dir)
