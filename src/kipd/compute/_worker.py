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

    def build(self, remat: bool = True) -> Any:
        """``kernel(x1, x2) -> (n1, n2)``, the jitted kernel this spec names
        (``x2=None``: the symmetric ``K(x1, x1)``); ``remat`` as in
        :func:`kipd.kernels.make`."""
        kernel = kipd.kernels.make(
            self.name, W_std=self.W_std, b_std=self.b_std, depth=self.depth,
            implementation=self.implementation, remat=remat,
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


def _linearizations(kernel: Any) -> tuple[Any, Any, Any]:
    """Per block kind (diagonal ``K_ss`` block, other ``K_ss`` block, ``K_ts`` block),
    ``f(*arrays, row, col, **sizes) -> (values, pullback)``: ``jax.vjp`` of the block's
    kernel values w.r.t. its support images. One definition serves both ways of pulling a
    block back: at once (the ``vjp`` phase recomputes the block) and later (``linearize``
    keeps the pullback from the forward pass)."""

    def diagonal(support, row, col, size):
        # A diagonal block of K_ss is symmetric: each unordered pair once.
        return jax.vjp(lambda rows: kernel(rows, None), _rows(support, row, size))

    def support_pair(support, row, col, size):
        return jax.vjp(kernel, _rows(support, row, size), _rows(support, col, size))

    def target(targets, support, row, col, target_size, support_size):
        target_rows = _rows(targets, row, target_size)
        return jax.vjp(lambda cols: kernel(target_rows, cols), _rows(support, col, support_size))

    return diagonal, support_pair, target


def _diagonal_cotangent(d_k_ss, row, col, size):
    return _block(d_k_ss, row, row, size, size)


def _pair_cotangent(d_k_ss, row, col, size):
    # Block (i, j), i < j, stands for (j, i) too: its cotangent is the sum of both.
    return _block(d_k_ss, row, col, size, size) + _block(d_k_ss, col, row, size, size).T


def _target_cotangent(d_k_ts, row, col, target_size, support_size):
    return _block(d_k_ts, row, col, target_size, support_size)


_COTANGENTS = (_diagonal_cotangent, _pair_cotangent, _target_cotangent)
_SIZE_NAMES = (("size",), ("size",), ("target_size", "support_size"))


def _pulled(pullback: Any, cotangent: jax.Array, kind: int) -> tuple[jax.Array, ...]:
    grads = pullback(cotangent)
    # A diagonal block's whole gradient is its rows'; its "columns" get zeros.
    return (grads[0], jnp.zeros_like(grads[0])) if kind == 0 else grads


def _recomputing_vjp(linearization: Any, cotangent: Any, kind: int) -> Any:
    """The ``vjp`` phase without a kept pullback: the block linearized and pulled back at
    once (its kernel rematerializes inside: bounded memory)."""

    def vjp(d_k, *args, **sizes):
        pullback = linearization(*args, **sizes)[1]
        return _pulled(pullback, cotangent(d_k, *args[-2:], **sizes), kind)

    return vjp


def _kept_pull(cotangent: Any, kind: int) -> Any:
    """The ``vjp`` phase given the pullback that ``linearize`` kept: the backward pass only."""

    def pull(pullback, d_k, row, col, **sizes):
        return _pulled(pullback, cotangent(d_k, row, col, **sizes), kind)

    return pull


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
            return kernel(_rows(support, row, size), None)

        self._forward = jax.jit(forward, static_argnames=("row_size", "col_size"))
        self._forward_diagonal = jax.jit(forward_diagonal, static_argnames="size")
        self._vjp, self._linearize, self._pull = [], [], []
        self._pullback_bytes: dict[tuple, int] = {}
        kept = spec.build(remat=False)
        for kind, (recomputing, keeping) in enumerate(
            zip(_linearizations(kernel), _linearizations(kept))
        ):
            static, cotangent = _SIZE_NAMES[kind], _COTANGENTS[kind]
            self._vjp.append(
                jax.jit(_recomputing_vjp(recomputing, cotangent, kind), static_argnames=static)
            )
            self._linearize.append(jax.jit(keeping, static_argnames=static))
            self._pull.append(jax.jit(_kept_pull(cotangent, kind), static_argnames=static))

    def _kind_and_args(self, shared: Shared, sizes: tuple[int, int], block: Block):
        """``(kind, arrays + (row, col), sizes, d_k)`` of a block: which linearization it
        uses (0 diagonal, 1 other ``K_ss``, 2 ``K_ts``), its arguments, and the name of its
        ``dL/dK`` in ``shared``."""
        support_block, target_block = sizes
        support, where = shared["support"], (block.row, block.col)
        if block.kind == SUPPORT_BLOCK:
            kind = 0 if block.row == block.col else 1
            return kind, (support, *where), {"size": support_block}, "d_k_ss"
        static = {"target_size": target_block, "support_size": support_block}
        return 2, (shared["targets"], support, *where), static, "d_k_ts"

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

    def linearize(self, shared: Shared, sizes: tuple[int, int], block: Block) -> tuple[jax.Array, Any]:
        """The kernel values of ``block`` and its pullback, which holds the block's
        intermediates on the device (see :meth:`pullback_bytes`) so that :meth:`vjp` given
        it runs only the backward pass.

        Returns:
          ``(values, pullback)``: the values as :meth:`forward`'s; the pullback a pytree
          for :meth:`vjp`.
        """
        kind, args, static, _ = self._kind_and_args(shared, sizes, block)
        return self._linearize[kind](*args, **static)

    def pullback_bytes(self, shared: Shared, sizes: tuple[int, int], block: Block) -> int:
        """Bytes of device memory the pullback of :meth:`linearize` holds for ``block``
        (from the shapes alone: nothing is computed)."""
        kind, args, static, _ = self._kind_and_args(shared, sizes, block)
        key = (kind, tuple(sorted(static.items())), *(getattr(a, "shape", ()) for a in args))
        if key not in self._pullback_bytes:  # tracing the kernel's VJP takes a while
            shapes = jax.eval_shape(functools.partial(self._linearize[kind], **static), *args)
            self._pullback_bytes[key] = sum(
                leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(shapes[1])
            )
        return self._pullback_bytes[key]

    def vjp_memory(self, shared: Shared, sizes: tuple[int, int], block: Block) -> Any:
        """XLA's compiled memory analysis of the recomputing VJP of ``block``."""
        kind, args, static, d_k = self._kind_and_args(shared, sizes, block)
        return self._vjp[kind].lower(shared[d_k], *args, **static).compile().memory_analysis()

    def vjp(
        self, shared: Shared, sizes: tuple[int, int], block: Block, pullback: Any = None
    ) -> tuple[jax.Array, ...]:
        """The block's kernel values pulled back with its block of dL/dK.

        Args:
          shared: the step's arrays, with ``d_k_ss`` / ``d_k_ts``.
          sizes: ``(support_block, target_block)`` of the plan.
          block: the block.
          pullback: the block's pullback from :meth:`linearize` in the forward pass, or
            ``None``: recompute the block (its intermediates rematerialized).

        Returns:
          ``ss``: ``(d_rows, d_cols)``, the gradients of the block's row and column
          support images (a diagonal block gives its whole gradient as ``d_rows`` and
          zeros as ``d_cols``); ``ts``: ``(d_cols,)`` (targets are not learned).
        """
        kind, args, static, d_k = self._kind_and_args(shared, sizes, block)
        if pullback is None:
            return self._vjp[kind](shared[d_k], *args, **static)
        return self._pull[kind](pullback, shared[d_k], *args[-2:], **static)

    def run(
        self, phase: str, shared: Shared, sizes: tuple[int, int], block: Block, pullback: Any = None
    ) -> Any:
        """``forward``, ``linearize`` or ``vjp`` by name (what executors send)."""
        if phase == "forward":
            return self.forward(shared, sizes, block)
        if phase == "linearize":
            return self.linearize(shared, sizes, block)
        if phase == "vjp":
            return self.vjp(shared, sizes, block, pullback)
        raise ValueError(f"unknown phase {phase!r}: 'forward', 'linearize' or 'vjp'")
