"""Evaluate a kernel in small blocks, so that its working set stays in cache and memory.

A ConvNet band holds ~10^5 entries per pair at the input resolution; computing a few
pairs at a time keeps every intermediate array in the CPU's cache (several times faster
per element than streaming large arrays through memory) and bounds peak memory for any
``n1 x n2``. Blocks run under ``lax.map``; by default each block is rematerialized in the backward
pass (``jax.checkpoint``), so a VJP also needs only one block's intermediates. With
``remat=False`` a VJP keeps every block's intermediates instead (memory for time: a pullback
computed once and applied later then runs only the backward pass, ``kipd.compute``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def _pad_rows(tree: Any, multiple: int) -> Any:
    """Pad axis 0 of every leaf to a multiple of ``multiple`` by repeating the last row.

    Repeating real rows (not zeros) keeps the padded entries finite: a zero image has
    zero variance, and its NaNs would leak into gradients through shared terms.
    """

    def pad(leaf):
        extra = -leaf.shape[0] % multiple
        return jnp.pad(leaf, [(0, extra)] + [(0, 0)] * (leaf.ndim - 1), mode="edge")

    return jax.tree_util.tree_map(pad, tree)


def _balanced(block: int, n: int) -> int:
    """The block size for ``n`` rows in blocks of at most ``block``: as many blocks as
    ``block`` needs, evenly sized, so that padding is least (10 rows in blocks of at most
    8: two of 5, not 8 and 8 with 6 padded rows)."""
    block = max(1, min(block, n))
    count = -(-n // block)
    return -(-n // count)


def _split_rows(tree: Any, block: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a.reshape(-1, block, *a.shape[1:]), tree)


def _blockwise(fn: Callable[..., Any], remat: bool) -> Callable[..., Any]:
    return jax.checkpoint(fn) if remat else fn


def map_rows(fn: Callable[[Any], Any], rows: Any, block: int, remat: bool = True) -> Any:
    """``fn`` applied to blocks of ``block`` rows of ``rows`` (leading axis n), joined;
    ``remat``: whether a VJP recomputes each block (see the module docstring).

    Returns:
      ``fn``'s output pytree with leading axis n.
    """
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    block = _balanced(block, n)
    if block == n:
        return fn(rows)
    blocks = _split_rows(_pad_rows(rows, block), block)
    out = jax.lax.map(_blockwise(fn, remat), blocks)
    return jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


def map_grid(
    fn: Callable[[Any, Any], Any], rows1: Any, rows2: Any, pairs_per_block: int, remat: bool = True
) -> Any:
    """``fn(rows1_block, rows2_block) -> (b1, b2, ...)`` over a grid of blocks, joined;
    ``remat`` as in :func:`map_rows`.

    Returns:
      ``fn``'s output pytree with leading axes ``(n1, n2)``.
    """
    n1 = jax.tree_util.tree_leaves(rows1)[0].shape[0]
    n2 = jax.tree_util.tree_leaves(rows2)[0].shape[0]
    block2 = _balanced(pairs_per_block, n2)
    block1 = _balanced(pairs_per_block // block2, n1)
    if block1 == n1 and block2 == n2:
        return fn(rows1, rows2)
    blocks1 = _split_rows(_pad_rows(rows1, block1), block1)
    blocks2 = _split_rows(_pad_rows(rows2, block2), block2)
    block_fn = _blockwise(fn, remat)

    def row_of_blocks(block_of_rows1):
        return jax.lax.map(lambda block_of_rows2: block_fn(block_of_rows1, block_of_rows2), blocks2)

    out = jax.lax.map(row_of_blocks, blocks1)  # (m1, m2, b1, b2, ...)

    def join(a):
        m1, m2, b1, b2 = a.shape[:4]
        a = jnp.swapaxes(a, 1, 2).reshape(m1 * b1, m2 * b2, *a.shape[4:])
        return a[:n1, :n2]

    return jax.tree_util.tree_map(join, out)


def map_symmetric(fn: Callable[[Any, Any], Any], rows: Any, block: int, remat: bool = True) -> Any:
    """``fn(rows_i, rows_j) -> (b, b, ...)`` over the blocks ``i <= j`` of the grid of
    ``rows`` with itself; the blocks ``i > j`` are the transposes of those computed
    (``remat`` as in :func:`map_rows`).

    For a symmetric ``fn`` (a kernel: ``K(x, x')[p, q] = K(x', x)[q, p]``) this equals
    :func:`map_grid` ``(fn, rows, rows, ...)`` with about half the work: ``m (m + 1) / 2``
    of the ``m^2`` blocks (``n (n + 1) / 2`` pairs for one-pair blocks).

    Returns:
      ``fn``'s output pytree with leading axes ``(n, n)``.
    """
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    block = _balanced(block, n)
    # Entries below the diagonal are the transposes of those above, inside the blocks on
    # the diagonal too: exactly symmetric, however a block rounds its two triangles.
    upper = np.triu(np.ones((n, n), bool))

    def mirror(a):
        flags = upper.reshape(n, n, *[1] * (a.ndim - 2))
        return jnp.where(flags, a, jnp.swapaxes(a, 0, 1))

    if block == n:  # one block, computed whole
        return jax.tree_util.tree_map(mirror, fn(rows, rows))
    blocks = _split_rows(_pad_rows(rows, block), block)
    count = -(-n // block)
    upper_rows, upper_cols = np.triu_indices(count)
    block_fn = _blockwise(fn, remat)

    def upper_block(index):
        take = lambda i: jax.tree_util.tree_map(lambda a: a[i], blocks)  # noqa: E731
        return block_fn(take(index[0]), take(index[1]))

    out = jax.lax.map(upper_block, (jnp.asarray(upper_rows), jnp.asarray(upper_cols)))
    # Block (i, j), i <= j, of the whole grid is computed block t(i, j); the mirror fills
    # the blocks below the diagonal.
    position = np.zeros((count, count), np.int32)
    position[upper_rows, upper_cols] = np.arange(len(upper_rows))

    def join(a):
        grid = jnp.swapaxes(a[position], 1, 2)  # (m, b, m, b, ...)
        grid = grid.reshape(count * block, count * block, *grid.shape[4:])
        return mirror(grid[:n, :n])

    return jax.tree_util.tree_map(join, out)
