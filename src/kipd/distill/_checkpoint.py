"""Atomic files and checkpoints of a run directory.

Every file of a run is written to a temporary name in the same folder and moved into
place with ``os.replace``, so a reader (or a resumed run) sees either the old file or
the new one, never half of one. A checkpoint is the whole KIP state pytree (support
images and labels, optimizer state, step, PRNG key) as the leaves of one ``.npz``; it is
restored into the structure of a freshly initialized state, so a resumed run continues
bit for bit.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import IO, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

_CHECKPOINT = re.compile(r"^step_(\d{8})\.npz$")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``.

    Args:
      path: destination; its folder must exist.
      write: writes the whole content to the binary file it is given.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    """Writes ``value`` as indented JSON, atomically."""
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Writes named arrays as an uncompressed ``.npz``, atomically."""
    atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def checkpoint_path(folder: Path, step: int) -> Path:
    """``folder/step_XXXXXXXX.npz``, the checkpoint of the state after ``step`` updates."""
    return folder / f"step_{step:08d}.npz"


def list_checkpoints(folder: Path) -> dict[int, Path]:
    """The checkpoints in ``folder`` by step (temporary files are ignored)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def save_checkpoint(folder: Path, state: Any, loss: float, keep_best: int) -> Path:
    """Writes ``state`` as the checkpoint of its step and prunes older checkpoints.

    Kept: the ``keep_best`` checkpoints of lowest train loss (the paper evaluates the 5
    lowest) and the latest one, which resuming continues from.

    Args:
      folder: the run's ``checkpoints/`` folder.
      state: a pytree with an integer ``step`` attribute (a :class:`KipState`).
      loss: train loss of the step that produced ``state``.
      keep_best: number of lowest-loss checkpoints kept besides the latest.

    Returns:
      Path of the new checkpoint.
    """
    leaves = jax.tree_util.tree_leaves(state)
    step = int(state.step)
    path = checkpoint_path(folder, step)
    arrays = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
    write_npz(path, {**arrays, "loss": np.float64(loss), "num_leaves": len(leaves)})
    checkpoints = list_checkpoints(folder)
    losses = {s: _stored_loss(p) for s, p in checkpoints.items()}
    keep = set(sorted(losses, key=lambda s: (losses[s], s))[:keep_best]) | {step}
    for s, p in checkpoints.items():
        if s not in keep:
            p.unlink()
    return path


def _stored_loss(path: Path) -> float:
    with np.load(path) as f:
        return float(f["loss"])


def load_checkpoint(path: Path, template: Any) -> Any:
    """Reads a checkpoint into the pytree structure of ``template``.

    Args:
      path: a file written by :func:`save_checkpoint`.
      template: a state of the same run (e.g. freshly initialized); gives the structure,
        leaf shapes and dtypes the checkpoint must match.

    Returns:
      The restored state.

    Raises:
      ValueError: the checkpoint does not match the template (another run's file).
    """
    leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(path) as f:
        stored = [f[f"leaf_{i:04d}"] for i in range(int(f["num_leaves"]))]
    shapes = [(np.shape(a), np.asarray(a).dtype) for a in leaves]
    if [(a.shape, a.dtype) for a in stored] != shapes:
        raise ValueError(
            f"checkpoint {path} does not match this run's state (other shapes or dtypes); "
            "it belongs to another run or configuration"
        )
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in stored])
