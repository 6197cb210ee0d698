"""Evaluate a kernel in small chunks, so that its working set stays in cache and memory.

A ConvNet band holds ~10^5 entries per pair at the input resolution; computing a few
pairs at a time keeps every intermediate array in the CPU's cache (several times faster
per element than streaming large arrays through memory) and bounds peak memory for any
``n1 x n2``. Chunks run under ``lax.map``; by default each chunk is rematerialized in the backward
pass (``jax.checkpoint``), so a VJP also needs only one chunk's intermediates. With
``remat=False`` a VJP keeps every chunk's intermediates instead (memory for time: a pullback
computed once and applied later then runs only the backward pass, ``kipd.compute``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def _balanced(chunk: int, n: int) -> int:
    """The chunk size for ``n`` rows in chunks of at most ``chunk``: as many chunks as
    ``chunk`` needs, evenly sized, so that padding is least (10 rows in chunks of at most
    8: two of 5, not 8 and 8 with 6 padded rows)."""
    chunk = max(1, min(chunk, n))
    count = -(-n // chunk)
    return -(-n // count)


def _split_rows(tree: Any, chunk: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a.reshape(-1, chunk, *a.shape[1:]), tree)


def _chunkwise(fn: Callable[..., Any], remat: bool) -> Callable[..., Any]:
    return jax.checkpoint(fn) if remat else fn


def map_rows(fn: Callable[[Any], Any], rows: Any, chunk: int, remat: bool = True) -> Any:
    """``fn`` applied to chunks of ``chunk`` rows of ``rows`` (leading axis n), joined;
    ``remat``: whether a VJP recomputes each chunk (see the module docstring).

    Returns:
      ``fn``'s output pytree with leading axis n.
    """
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    chunk = _balanced(chunk, n)
    if chunk == n:
        return fn(rows)
    chunks = _split_rows(_pad_rows(rows, chunk), chunk)
    out = jax.lax.map(_chunkwise(fn, remat), chunks)
    return jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


def map_grid(
    fn: Callable[[Any, Any], Any], rows1: Any, rows2: Any, pairs_per_chunk: int, remat: bool = True
) -> Any:
    """``fn(rows1_chunk, rows2_chunk) -> (b1, b2, ...)`` over a grid of chunks, joined;
    ``remat`` as in :func:`map_rows`.

    Returns:
      ``fn``'s output pytree with leading axes ``(n1, n2)``.
    """
    n1 = jax.tree_util.tree_leaves(rows1)[0].shape[0]
    n2 = jax.tree_util.tree_leaves(rows2)[0].shape[0]
    chunk2 = _balanced(pairs_per_chunk, n2)
    chunk1 = _balanced(pairs_per_chunk // chunk2, n1)
    if chunk1 == n1 and chunk2 == n2:
        return fn(rows1, rows2)
    chunks1 = _split_rows(_pad_rows(rows1, chunk1), chunk1)
    chunks2 = _split_rows(_pad_rows(rows2, chunk2), chunk2)
    chunk_fn = _chunkwise(fn, remat)

    def row_of_chunks(chunk_of_rows1):
        return jax.lax.map(lambda chunk_of_rows2: chunk_fn(chunk_of_rows1, chunk_of_rows2), chunks2)

    out = jax.lax.map(row_of_chunks, chunks1)  # (m1, m2, b1, b2, ...)

    def join(a):
        m1, m2, b1, b2 = a.shape[:4]
        a = jnp.swapaxes(a, 1, 2).reshape(m1 * b1, m2 * b2, *a.shape[4:])
        return a[:n1, :n2]

    return jax.tree_util.tree_map(join, out)


def map_symmetric(fn: Callable[[Any, Any], Any], rows: Any, chunk: int, remat: bool = True) -> Any:
    """``fn(rows_i, rows_j) -> (b, b, ...)`` over the chunks ``i <= j`` of the grid of
    ``rows`` with itself; the chunks ``i > j`` are the transposes of those computed
    (``remat`` as in :func:`map_rows`).

    For a symmetric ``fn`` (a kernel: ``K(x, x')[p, q] = K(x', x)[q, p]``) this equals
    :func:`map_grid` ``(fn, rows, rows, ...)`` with about half the work: ``m (m + 1) / 2``
    of the ``m^2`` chunks (``n (n + 1) / 2`` pairs for one-pair chunks).

    Returns:
      ``fn``'s output pytree with leading axes ``(n, n)``.
    """
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    chunk = _balanced(chunk, n)
    # Entries below the diagonal are the transposes of those above, inside the chunks on
    # the diagonal too: exactly symmetric, however a chunk rounds its two triangles.
    upper = np.triu(np.ones((n, n), bool))

    def mirror(a):
        flags = upper.reshape(n, n, *[1] * (a.ndim - 2))
        return jnp.where(flags, a, jnp.swapaxes(a, 0, 1))

    if chunk == n:  # one chunk, computed whole
        return jax.tree_util.tree_map(mirror, fn(rows, rows))
    chunks = _split_rows(_pad_rows(rows, chunk), chunk)
    count = -(-n // chunk)
    upper_rows, upper_cols = np.triu_indices(count)
    chunk_fn = _chunkwise(fn, remat)

    def upper_chunk(index):
        take = lambda i: jax.tree_util.tree_map(lambda a: a[i], chunks)  # noqa: E731
        return chunk_fn(take(index[0]), take(index[1]))

    out = jax.lax.map(upper_chunk, (jnp.asarray(upper_rows), jnp.asarray(upper_cols)))
    # Chunk (i, j), i <= j, of the whole grid is computed chunk t(i, j); the mirror fills
    # the chunks below the diagonal.
    position = np.zeros((count, count), np.int32)
    position[upper_rows, upper_cols] = np.arange(len(upper_rows))

    def join(a):
        grid = jnp.swapaxes(a[position], 1, 2)  # (m, b, m, b, ...)
        grid = grid.reshape(count * chunk, count * chunk, *grid.shape[4:])
        return mirror(grid[:n, :n])

    return jax.tree_util.tree_map(join, out)
