"""What a worker does with one block: its kernel values, or its VJP with a block of dL/dK.

The worker side of paper §2.1. A worker is built from a :class:`KernelSpec` (a name and
hyperparameters, cheap to send anywhere) and compiles each block function once; the
block's position is a traced argument, so every block of a kind reuses one compilation.
The same :class:`BlockWorker` serves the local executor (one per process) and each Ray
actor.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import kipd.kernels
from kipd.compute._chunk_sizes import ensure_chunk_sizes
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

    def build(self, remat: bool = True, vjp: bool = False) -> Any:
        """``kernel(x1, x2) -> (n1, n2)``, the jitted kernel this spec names
        (``x2=None``: the symmetric ``K(x1, x1)``); ``remat`` as in
        :func:`kipd.kernels.make`. ``vjp``: a kernel that will be differentiated, whose
        chunks (with ``remat``) are a GPU's calibrated fwd+VJP size
        (``kipd.kernels.default_pairs_per_block(..., vjp=True)``); on a CPU the same
        kernel as without it."""
        make = functools.partial(
            kipd.kernels.make,
            self.name,
            W_std=self.W_std,
            b_std=self.b_std,
            depth=self.depth,
            implementation=self.implementation,
            remat=remat,
        )
        if vjp and remat and jax.default_backend() != "cpu":
            return _with_vjp_chunks(make, self)
        return functools.partial(make(), get=self.get)


def _with_vjp_chunks(make: Any, spec: KernelSpec) -> Any:
    """``spec``'s kernel whose pairs per chunk are, for each image shape it is called on,
    the accelerator's fwd+VJP size (the pairs of one ``make`` call are static; one jitted
    kernel per size)."""
    in_band = kipd.kernels.architecture(spec.name, depth=spec.depth).band(None)
    assert in_band is not None  # every architecture starts from images: a spatial band
    kernels = functools.cache(lambda pairs: make(pairs_per_block=pairs))

    def kernel(x1: jax.Array, x2: jax.Array | None = None) -> jax.Array:
        # No GPU stage pools (fused and pooled only change a CPU's chunks).
        pairs = kipd.kernels.default_pairs_per_block(in_band, tuple(x1.shape[1:]), vjp=True)
        return kernels(pairs)(x1, x2, get=spec.get)

    return kernel


Shared = Mapping[str, Any]
"""The arrays of a step every block reads, sent once: ``support`` ``(n_s', H, W, C)``,
``targets`` ``(n_t', H, W, C)``, and for the backward pass ``d_k_ss`` ``(n_s', n_s')`` and
``d_k_ts`` ``(n_t', n_s')`` (all padded to whole blocks)."""


def _rows(array: jax.Array, index: jax.Array, size: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(array, index * size, size)


def _block(matrix: jax.Array, row: jax.Array, col: jax.Array, rows: int, cols: int) -> jax.Array:
    return jax.lax.dynamic_slice(matrix, (row * rows, col * cols), (rows, cols))


KEPT_PULLBACK_LIMIT = 2**30
"""Bytes a block's pullback may hold with every intermediate kept (the C++ stages keep only
their inputs: ~85 KB per ConvNet pair at 28x28, 0.1 GB for a 32 x 32 block); over it (the
XLA stage: ~18 MB per ConvNet pair at 32x32x3) the block's linearization rematerializes its
pairs instead, so that recomputing one block stays within memory. A function of the shapes
alone, never of a device: every executor picks the same linearization, hence the same bits."""


def _linearizations(kernel: Any) -> tuple[Any, Any, Any]:
    """Per block kind (diagonal ``K_ss`` block, other ``K_ss`` block, ``K_ts`` block),
    ``f(*arrays, row, col, **sizes) -> (values, pullback)``: ``jax.vjp`` of the block's
    kernel values w.r.t. its support images. A block's one forward: its values in the
    forward pass of ``value_and_grad`` and its pullback, kept or recomputed, come from it."""

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


def _pull(cotangent: Any, kind: int) -> Any:
    """A block's one backward: its pullback (kept from the forward pass or recomputed by
    the same linearization) applied to its block of dL/dK."""

    def pull(pullback, d_k, row, col, **sizes):
        grads = pullback(cotangent(d_k, row, col, **sizes))
        # A diagonal block's whole gradient is its rows'; its "columns" get zeros.
        return (grads[0], jnp.zeros_like(grads[0])) if kind == 0 else grads

    return pull


class BlockWorker:
    """Computes blocks of one kernel; holds its compiled block functions.

    A block's gradient path is one forward (:meth:`linearize`: values and pullback) and one
    backward (the pullback applied to the block's dL/dK), each compiled once: a VJP given
    the pullback kept from the forward pass and a VJP that recomputes it run the same two
    programs on the same inputs, so they give the same bits on any executor.

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
        ensure_chunk_sizes()  # a GPU's chunk sizes, calibrated once per machine (CPU: none)
        kernel = spec.build()

        def forward(rows_array, support, row, col, row_size, col_size):
            return kernel(_rows(rows_array, row, row_size), _rows(support, col, col_size))

        def forward_diagonal(support, row, size):
            return kernel(_rows(support, row, size), None)

        self._forward = jax.jit(forward, static_argnames=("row_size", "col_size"))
        self._forward_diagonal = jax.jit(forward_diagonal, static_argnames="size")
        # Per kind, two linearizations: every intermediate kept (the backward pass only
        # applies transposes), or each internal block of pairs rematerialized (bounded
        # memory; on a GPU in chunks of its calibrated fwd+VJP size); :meth:`_linearization`
        # picks one from the block's shapes.
        self._keeping, self._rematerializing, self._pull = [], [], []
        self._choice: dict[tuple, tuple[Any, int]] = {}
        for kind, (keeping, rematerializing) in enumerate(
            zip(_linearizations(spec.build(remat=False)), _linearizations(spec.build(vjp=True)))
        ):
            static = _SIZE_NAMES[kind]
            self._keeping.append(jax.jit(keeping, static_argnames=static))
            self._rematerializing.append(jax.jit(rematerializing, static_argnames=static))
            self._pull.append(jax.jit(_pull(_COTANGENTS[kind], kind), static_argnames=static))

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

    def _linearization(self, kind: int, args: tuple, static: dict) -> tuple[Any, int]:
        """The block's linearization and its pullback's bytes: the keeping one where its
        pullback fits :data:`KEPT_PULLBACK_LIMIT`, else the rematerializing one (decided
        from shapes and dtypes, once per shape)."""
        key = (
            kind,
            tuple(sorted(static.items())),
            *((getattr(a, "shape", ()), str(getattr(a, "dtype", ""))) for a in args),
        )
        if key not in self._choice:  # tracing the kernel's VJP takes a while
            for linearize in (self._keeping[kind], self._rematerializing[kind]):
                shapes = jax.eval_shape(functools.partial(linearize, **static), *args)
                held = sum(
                    leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(shapes[1])
                )
                if held <= KEPT_PULLBACK_LIMIT:
                    break
            self._choice[key] = (linearize, held)
        return self._choice[key]

    def forward(self, shared: Shared, sizes: tuple[int, int], block: Block) -> jax.Array:
        """The kernel values of ``block`` (for a kernel matrix; the gradient path takes
        its values from :meth:`linearize`).

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

    def linearize(
        self, shared: Shared, sizes: tuple[int, int], block: Block
    ) -> tuple[jax.Array, Any]:
        """The block's one forward: its kernel values and its pullback, which holds the
        block's intermediates on the device (see :meth:`pullback_bytes`) so that
        :meth:`vjp` given it runs only the backward pass.

        Returns:
          ``(values, pullback)``: ``(rows, support_block)`` values; the pullback a pytree
          for :meth:`vjp`.
        """
        kind, args, static, _ = self._kind_and_args(shared, sizes, block)
        return self._linearization(kind, args, static)[0](*args, **static)

    def pullback_bytes(self, shared: Shared, sizes: tuple[int, int], block: Block) -> int:
        """Bytes of device memory the pullback of :meth:`linearize` holds for ``block``
        (from the shapes alone: nothing is computed)."""
        kind, args, static, _ = self._kind_and_args(shared, sizes, block)
        return self._linearization(kind, args, static)[1]

    def vjp_peak_bytes(self, shared: Shared, sizes: tuple[int, int], block: Block) -> int:
        """Device memory a recomputing :meth:`vjp` of ``block`` needs at its peak, from
        XLA's compiled memory analysis: the larger of the linearization (its temporaries
        and outputs) and the backward pass (its temporaries and outputs, with the pullback
        held)."""
        kind, args, static, d_k = self._kind_and_args(shared, sizes, block)
        linearize, held = self._linearization(kind, args, static)
        forward = linearize.lower(*args, **static).compile().memory_analysis()
        pullback = jax.eval_shape(functools.partial(linearize, **static), *args)[1]
        backward = (
            self._pull[kind]
            .lower(pullback, shared[d_k], *args[-2:], **static)
            .compile()
            .memory_analysis()
        )
        return max(
            int(forward.temp_size_in_bytes) + int(forward.output_size_in_bytes),
            held + int(backward.temp_size_in_bytes) + int(backward.output_size_in_bytes),
        )

    def vjp(
        self, shared: Shared, sizes: tuple[int, int], block: Block, pullback: Any = None
    ) -> tuple[jax.Array, ...]:
        """The block's kernel values pulled back with its block of dL/dK.

        Args:
          shared: the step's arrays, with ``d_k_ss`` / ``d_k_ts``.
          sizes: ``(support_block, target_block)`` of the plan.
          block: the block.
          pullback: the block's pullback from :meth:`linearize` in the forward pass, or
            ``None``: recompute it with :meth:`linearize` (the same bits either way).

        Returns:
          ``ss``: ``(d_rows, d_cols)``, the gradients of the block's row and column
          support images (a diagonal block gives its whole gradient as ``d_rows`` and
          zeros as ``d_cols``); ``ts``: ``(d_cols,)`` (targets are not learned).
        """
        kind, args, static, d_k = self._kind_and_args(shared, sizes, block)
        if pullback is None:
            pullback = self.linearize(shared, sizes, block)[1]
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
