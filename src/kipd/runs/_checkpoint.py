"""Checkpoints of a KIP run: the whole state, keyed by tree path, verified on read.

A checkpoint is the whole KIP state pytree (support images and labels, optimizer state,
step, PRNG key) in one ``.npz`` written by :func:`kipd.files.write_npz`: each leaf is
stored under its path in the tree (``support_images``, ``support_labels``,
``opt_state/0/mu/images``, ``step``, ``key``), so a reader that wants the support set
takes two arrays by name and needs no optimizer to rebuild a template. Restoring into a
freshly initialized state gives back the same structure, so a resumed run continues bit
for bit. Checkpoints of kipd 0.1 stored the leaves by position (``leaf_0000``, ...,
``num_leaves``); they are read too (the support images and labels are the first two
leaves of :class:`~kipd.distill.KipState`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from kipd import files

_CHECKPOINT = re.compile(r"^step_(\d{8})\.npz$")
_LOSS = "loss"
_LEGACY_COUNT = "num_leaves"

T = TypeVar("T")


def checkpoint_path(folder: Path, step: int) -> Path:
    """``folder/step_00000050.npz`` (the step in 8 digits): the checkpoint of the state
    after ``step`` updates."""
    return folder / f"step_{step:08d}.npz"


def list_checkpoints(folder: Path) -> dict[int, Path]:
    """The checkpoints in ``folder`` by increasing step (temporary files are ignored)."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def _key_name(key: Any) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    raise TypeError(f"unexpected pytree key {key!r}")


def named_leaves(state: Any) -> dict[str, Any]:
    """The leaves of a pytree by their path, e.g. ``{"support_images": ..., "step": ...}``.

    Example:
      >>> named_leaves({"a": 1, "b": (2, 3)})
      {'a': 1, 'b/0': 2, 'b/1': 3}
    """
    with_paths, _ = jax.tree_util.tree_flatten_with_path(state)
    return {"/".join(_key_name(k) for k in path): leaf for path, leaf in with_paths}


def save_checkpoint(folder: Path, state: Any, loss: float, keep_best: int) -> Path:
    """Writes ``state`` as the checkpoint of its step and prunes older checkpoints.

    Kept: the ``keep_best`` checkpoints of lowest train loss (the paper evaluates the 5
    lowest) and the latest one, which resuming continues from. A damaged older checkpoint
    counts as the worst loss, so it is the first to go.

    Args:
      folder: the run's ``checkpoints/`` folder.
      state: a pytree with an integer ``step`` attribute (a :class:`KipState`).
      loss: train loss of the step that produced ``state``.
      keep_best: number of lowest-loss checkpoints kept besides the latest.

    Returns:
      Path of the new checkpoint.
    """
    step = int(state.step)
    path = checkpoint_path(folder, step)
    files.write_npz(path, {**named_leaves(state), _LOSS: np.float64(loss)})
    checkpoints = list_checkpoints(folder)
    losses = {s: _stored_loss(p) for s, p in checkpoints.items()}
    keep = set(sorted(losses, key=lambda s: (losses[s], s))[:keep_best]) | {step}
    for s, p in checkpoints.items():
        if s not in keep:
            p.unlink()
    return path


def lowest_loss(folder: Path, count: int) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``count`` readable checkpoints of lowest stored train loss,
    lowest first (ties: the earlier step)."""
    losses = {step: (_stored_loss(path), path) for step, path in list_checkpoints(folder).items()}
    ranked = sorted((loss, step, path) for step, (loss, path) in losses.items() if loss < math.inf)
    return [(step, path) for _, step, path in ranked[:count]]


def _stored_loss(path: Path) -> float:
    try:
        return float(files.read_npz(path)[_LOSS])
    except (files.DamagedFileError, KeyError):
        return math.inf


def load_checkpoint(path: Path, template: Any) -> Any:
    """Reads a checkpoint into the pytree structure of ``template``.

    Args:
      path: a file written by :func:`save_checkpoint` (or by kipd 0.1).
      template: a state of the same run (e.g. freshly initialized); gives the structure,
        leaf shapes and dtypes the checkpoint must match.

    Returns:
      The restored state.

    Raises:
      kipd.files.DamagedFileError: the file is truncated or corrupted.
      ValueError: the checkpoint does not match the template (another run's file).
    """
    arrays = files.read_npz(path)
    names = named_leaves(template)
    stored: list[np.ndarray | None]
    if _LEGACY_COUNT in arrays:
        stored = [arrays[f"leaf_{i:04d}"] for i in range(int(arrays[_LEGACY_COUNT]))]
    else:
        stored = [arrays.get(name) for name in names]
    expected = [(np.shape(a), np.asarray(a).dtype) for a in names.values()]
    if [None if a is None else (a.shape, a.dtype) for a in stored] != expected:
        raise ValueError(
            f"checkpoint {path} does not match this run's state (other leaves, shapes or "
            "dtypes); it belongs to another run or configuration"
        )
    treedef = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in stored])


def read_support(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The support images ``(n, H, W, C)`` and labels ``(n, C)`` of a checkpoint.

    Raises:
      kipd.files.DamagedFileError: the file is damaged or holds no support set.
    """
    arrays = files.read_npz(path)
    legacy = _LEGACY_COUNT in arrays
    names = ("leaf_0000", "leaf_0001") if legacy else ("support_images", "support_labels")
    if not all(name in arrays for name in names):
        raise files.DamagedFileError(path, "it holds no support images and labels")
    return arrays[names[0]], arrays[names[1]]


def newest_readable(folder: Path, read: Callable[[Path], T]) -> tuple[int, T] | None:
    """``(step, read(path))`` of the newest checkpoint in ``folder`` that reads back.

    A damaged newer checkpoint is skipped with a warning that names it and the one used
    instead (the run loses the steps between them, nothing else).

    Returns:
      ``None`` if the folder holds no readable checkpoint.
    """
    skipped: list[str] = []
    for step, path in reversed(list_checkpoints(folder).items()):
        try:
            value = read(path)
        except files.DamagedFileError as err:
            skipped.append(str(err))
            continue
        if skipped:
            warnings.warn(
                f"{'; '.join(skipped)}. Using the newest good checkpoint instead: {path.name} "
                f"(step {step}).",
                RuntimeWarning,
                stacklevel=2,
            )
        return step, value
    if skipped:
        warnings.warn(
            f"{'; '.join(skipped)}. No good checkpoint is left: starting from the initial "
            "support set.",
            RuntimeWarning,
            stacklevel=2,
        )
    return None
