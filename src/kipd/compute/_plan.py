"""The block plan of paper §2.1: which ``B x B`` kernel blocks a KIP step computes.

A step needs ``K_ss = K(X_s, X_s)`` and ``K_ts = K(X_t, X_s)``. The plan cuts both into
blocks of at most ``block_size`` rows and columns: the upper triangle of ``K_ss`` (a
block ``(i, j)`` with ``i < j`` also gives ``(j, i)`` by symmetry) and every block of
``K_ts``. Each block is an independent task; an executor runs the tasks anywhere and
returns the results in plan order, and the server assembles them here. Arrays are padded
to whole blocks once, on the server, so every task of a kind has one shape and every
worker compiles one function per kind.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

SUPPORT_BLOCK = "ss"
"""A block of ``K_ss``: rows and columns are support blocks."""
TARGET_BLOCK = "ts"
"""A block of ``K_ts``: rows are a target block, columns a support block."""


class Block(NamedTuple):
    """One task of the plan.

    Attributes:
      kind: :data:`SUPPORT_BLOCK` or :data:`TARGET_BLOCK`.
      row: block index along the rows (support blocks for ``ss``, target blocks for ``ts``).
      col: support block index along the columns.
    """

    kind: str
    row: int
    col: int


class BlockPlan(NamedTuple):
    """The blocks of one step and the shapes they share.

    Attributes:
      support_size: ``n_s``, support images.
      target_size: ``n_t``, target images (0 for a plan of ``K_ss`` only).
      support_block: rows of a support block, at most ``block_size``.
      target_block: rows of a target block, at most ``block_size``.
      blocks: the tasks, ``ss`` blocks first, each in row-major order.
    """

    support_size: int
    target_size: int
    support_block: int
    target_block: int
    blocks: tuple[Block, ...]

    @property
    def padded_support_size(self) -> int:
        return _round_up(self.support_size, self.support_block)

    @property
    def padded_target_size(self) -> int:
        return _round_up(self.target_size, self.target_block) if self.target_size else 0

    def count(self, kind: str) -> int:
        """Number of blocks of a kind."""
        return sum(block.kind == kind for block in self.blocks)

    def entries(self, kind: str) -> int:
        """Kernel entries (pairs) the blocks of a kind compute, padding included."""
        rows = self.support_block if kind == SUPPORT_BLOCK else self.target_block
        return self.count(kind) * rows * self.support_block


def _round_up(n: int, multiple: int) -> int:
    return math.ceil(n / multiple) * multiple


def plan_blocks(
    support_size: int, target_size: int, block_size: int, *, support_blocks: bool = True
) -> BlockPlan:
    """The blocks of ``K_ss`` (upper triangle) and ``K_ts`` for a step.

    Args:
      support_size: ``n_s >= 1``.
      target_size: ``n_t >= 0``.
      block_size: ``B >= 1``, the largest block side ("kernel batch size" of the paper).
      support_blocks: include the blocks of ``K_ss`` (``False`` plans ``K_ts`` alone,
        e.g. a test set against a support set).

    Returns:
      The :class:`BlockPlan`.

    Example:
      >>> plan = plan_blocks(5, 7, 2)
      >>> plan.count("ss"), plan.count("ts"), plan.padded_support_size
      (6, 12, 6)
    """
    for name, value, least in (
        ("support_size", support_size, 1),
        ("target_size", target_size, 0),
        ("block_size", block_size, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    # Blocks of equal size, at most block_size: 100 rows with B = 32 give 4 blocks of 25,
    # not 4 of 32 with 28 rows of padding.
    n_support = math.ceil(support_size / block_size)
    n_target = math.ceil(target_size / block_size)
    support_block = math.ceil(support_size / n_support)
    target_block = math.ceil(target_size / n_target) if target_size else 0
    ss = (
        [Block(SUPPORT_BLOCK, i, j) for i in range(n_support) for j in range(i, n_support)]
        if support_blocks
        else []
    )
    ts = [Block(TARGET_BLOCK, i, j) for i in range(n_target) for j in range(n_support)]
    return BlockPlan(support_size, target_size, support_block, target_block, tuple(ss + ts))


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with rows repeated from its last one up to ``size`` rows.

    Repeated real images (not zeros) keep padded kernel entries finite; they are cropped
    from every result and get a zero cotangent.
    """
    array = np.asarray(array)
    extra = size - array.shape[0]
    return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)]) if extra else array


def pad_matrix(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``matrix`` padded with zeros to ``(rows, cols)`` (cotangents of padded entries)."""
    matrix = np.asarray(matrix)
    return np.pad(matrix, [(0, rows - matrix.shape[0]), (0, cols - matrix.shape[1])])


def assemble(plan: BlockPlan, results: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``K_ss`` and ``K_ts`` from the forward results of ``plan.blocks`` (in plan order).

    Returns:
      ``(K_ss (n_s, n_s), K_ts (n_t, n_s))``; ``K_ss`` is exactly symmetric. A plan
      without ``ss`` blocks gives an empty ``K_ss``.
    """
    dtype = results[0].dtype if results else np.float32
    b_s, b_t = plan.support_block, plan.target_block
    k_ss = np.zeros((plan.padded_support_size,) * 2, dtype)
    k_ts = np.zeros((plan.padded_target_size, plan.padded_support_size), dtype)
    for block, value in zip(plan.blocks, results, strict=True):
        cols = slice(block.col * b_s, (block.col + 1) * b_s)
        if block.kind == SUPPORT_BLOCK:
            rows = slice(block.row * b_s, (block.row + 1) * b_s)
            k_ss[rows, cols] = value
            k_ss[cols, rows] = value.T
        else:
            k_ts[block.row * b_t : (block.row + 1) * b_t, cols] = value
    n_s, n_t = plan.support_size, plan.target_size
    k_ss = k_ss[:n_s, :n_s] if plan.count(SUPPORT_BLOCK) else k_ss[:0, :0]
    return k_ss, k_ts[:n_t, :n_s]


def accumulate(plan: BlockPlan, results: list[tuple[np.ndarray, ...]]) -> np.ndarray:
    """The gradient of the support images: the VJP results of ``plan.blocks`` summed.

    ``ss`` results are ``(d_rows, d_cols)``, ``ts`` results ``(d_cols,)``. The sum runs in
    plan order whichever worker computed a block, so the result does not depend on the
    executor, the number of workers, or a worker lost mid-step.

    Returns:
      ``(n_s, H, W, C)`` gradient.
    """
    b_s = plan.support_block
    total: np.ndarray | None = None
    for block, parts in zip(plan.blocks, results, strict=True):
        if total is None:
            total = np.zeros((plan.padded_support_size, *parts[-1].shape[1:]), parts[-1].dtype)
        total[block.col * b_s : (block.col + 1) * b_s] += parts[-1]
        if block.kind == SUPPORT_BLOCK:
            total[block.row * b_s : (block.row + 1) * b_s] += parts[0]
    assert total is not None  # a plan has at least one block
    return total[: plan.support_size]
