"""What a worker does with one block: its kernel values, or its VJP with a block of dL/dK.

The worker side of paper §2.1. A worker is built from a :class:`KernelSpec` (a name and
hyperparameters, cheap to send anywhere) and compiles each block function once; the
block's position is a traced argument, so every block of a kind reuses one compilation.
The same :class:`BlockWorker` serves the local executor (one per process) and each Ray
actor.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

import kipd.kernels
from kipd.compute._plan import SUPPORT_BLOCK, Block


class KernelSpec(NamedTuple):
    """A kernel by name: what an executor sends to its workers instead of a function.

    Attributes:
      name: architecture for :func:`kipd.kernels.make` (``fc<n>``, ``convvec<n>``,
        ``convnet``).
      get: ``"ntk"`` or ``"nngp"``.
      W_std, b_std: weight and bias standard deviations.
      depth: pooling blocks of ``convnet`` (``None``: its default).
      implementation: the kernel's full-resolution stage (:func:`kipd.kernels.make`);
        ``"auto"`` is resolved on each worker, for its own device.
    """

    name: str
    get: str = "ntk"
    W_std: float = 2**0.5
    b_std: float = 0.1
    depth: int | None = None
    implementation: str = "auto"

    def build(self) -> Any:
        """``kernel(x1, x2) -> (n1, n2)``, the jitted kernel this spec names
        (``x2=None``: the symmetric ``K(x1, x1)``)."""
        kernel = kipd.kernels.make(
            self.name, W_std=self.W_std, b_std=self.b_std, depth=self.depth,
            implementation=self.implementation,
        )
        return functools.partial(kernel, get=self.get)


Shared = Mapping[str, Any]
"""The arrays of a step every block reads, sent once: ``support`` ``(n_s', H, W, C)``,
``targets`` ``(n_t', H, W, C)``, and for the backward pass ``d_k_ss`` ``(n_s', n_s')`` and
``d_k_ts`` ``(n_t', n_s')`` (all padded to whole blocks)."""


def _rows(array: jax.Array, index: jax.Array, size: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(array, index * size, size)


def _block(matrix: jax.Array, row: jax.Array, col: jax.Array, rows: int, cols: int) -> jax.Array:
    return jax.lax.dynamic_slice(matrix, (row * rows, col * cols), (rows, cols))


class BlockWorker:
    """Computes blocks of one kernel; holds its compiled block functions.

    Args:
      spec: the kernel.

    Example:
      >>> import numpy as np
      >>> worker = BlockWorker(KernelSpec("fc1"))
      >>> support = np.ones((4, 3, 3, 1), np.float32)
      >>> worker.forward({"support": support}, (2, 0), Block("ss", 0, 1)).shape
      (2, 2)
    """

    def __init__(self, spec: KernelSpec):
        self.spec = spec
        kernel = spec.build()

        def forward(rows_array, support, row, col, row_size, col_size):
            return kernel(_rows(rows_array, row, row_size), _rows(support, col, col_size))

        def forward_diagonal(support, row, size):
            # A diagonal block of K_ss is symmetric: each unordered pair once.
            return kernel(_rows(support, row, size), None)

        def vjp_diagonal(support, d_k_ss, row, size):
            _, pullback = jax.vjp(lambda rows: kernel(rows, None), _rows(support, row, size))
            (d_rows,) = pullback(_block(d_k_ss, row, row, size, size))
            return d_rows, jnp.zeros_like(d_rows)

        def vjp_support(support, d_k_ss, row, col, size):
            # Block (i, j), i < j, stands for (j, i) too: its cotangent is the sum of both.
            cotangent = _block(d_k_ss, row, col, size, size) + _block(d_k_ss, col, row, size, size).T
            _, pullback = jax.vjp(kernel, _rows(support, row, size), _rows(support, col, size))
            return pullback(cotangent)

        def vjp_target(targets, support, d_k_ts, row, col, target_size, support_size):
            target_rows = _rows(targets, row, target_size)
            _, pullback = jax.vjp(
                lambda cols: kernel(target_rows, cols), _rows(support, col, support_size)
            )
            return pullback(_block(d_k_ts, row, col, target_size, support_size))

        self._forward = jax.jit(forward, static_argnames=("row_size", "col_size"))
        self._forward_diagonal = jax.jit(forward_diagonal, static_argnames="size")
        self._vjp_diagonal = jax.jit(vjp_diagonal, static_argnames="size")
        self._vjp_support = jax.jit(vjp_support, static_argnames="size")
        self._vjp_target = jax.jit(vjp_target, static_argnames=("target_size", "support_size"))

    def forward(self, shared: Shared, sizes: tuple[int, int], block: Block) -> jax.Array:
        """The kernel values of ``block``.

        Args:
          shared: the step's arrays (``support``, and ``targets`` for ``ts`` blocks).
          sizes: ``(support_block, target_block)`` of the plan.
          block: the block.

        Returns:
          ``(rows, support_block)`` kernel values.
        """
        support_block, target_block = sizes
        if block.kind == SUPPORT_BLOCK and block.row == block.col:
            return self._forward_diagonal(shared["support"], block.row, support_block)
        if block.kind == SUPPORT_BLOCK:
            rows_array, row_size = shared["support"], support_block
        else:
            rows_array, row_size = shared["targets"], target_block
        return self._forward(
            rows_array, shared["support"], block.row, block.col, row_size, support_block
        )

    def vjp(self, shared: Shared, sizes: tuple[int, int], block: Block) -> tuple[jax.Array, ...]:
        """The block's kernel values pulled back with its block of dL/dK.

        Returns:
          ``ss``: ``(d_rows, d_cols)``, the gradients of the block's row and column
          support images (a diagonal block gives its whole gradient as ``d_rows`` and
          zeros as ``d_cols``); ``ts``: ``(d_cols,)`` (targets are not learned).
        """
        support_block, target_block = sizes
        if block.kind == SUPPORT_BLOCK and block.row == block.col:
            return self._vjp_diagonal(
                shared["support"], shared["d_k_ss"], block.row, support_block
            )
        if block.kind == SUPPORT_BLOCK:
            return self._vjp_support(
                shared["support"], shared["d_k_ss"], block.row, block.col, support_block
            )
        return self._vjp_target(
            shared["targets"],
            shared["support"],
            shared["d_k_ts"],
            block.row,
            block.col,
            target_block,
            support_block,
        )

    def run(self, phase: str, shared: Shared, sizes: tuple[int, int], block: Block) -> Any:
        """``forward`` or ``vjp`` by name (what executors send)."""
        if phase == "forward":
            return self.forward(shared, sizes, block)
        if phase == "vjp":
            return self.vjp(shared, sizes, block)
        raise ValueError(f"unknown phase {phase!r}: 'forward' or 'vjp'")
