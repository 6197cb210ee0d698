"""The server side of paper §2.1: a loss of kernel matrices and its gradient, by blocks.

Forward: the executor computes the blocks of ``K_ss`` and ``K_ts``; the server assembles
them and evaluates the loss and its cotangents ``dL/dK_ss``, ``dL/dK_ts`` (and the
gradients of the loss's other arguments, e.g. learned labels). Backward: the executor
pulls each block back with its block of ``dL/dK``; the server sums the partial gradients
of the support images. The result equals ``jax.grad`` of the whole loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import kipd.kernels
from kipd.compute._executor import Executor, OnBlock
from kipd.compute._local import LocalExecutor
from kipd.compute._plan import BlockPlan, accumulate, assemble, pad_matrix, pad_rows, plan_blocks
from kipd.compute._worker import KernelSpec

LossFn = Callable[..., tuple[jax.Array, Any]]
"""``loss_fn(k_ss, k_ts, *args) -> (loss, aux)``: a scalar loss of the kernel matrices."""


def default_block_size(spec: KernelSpec, image_shape: tuple[int, ...]) -> int:
    """The block side ``B`` for a kernel and image shape: ``B**2`` pairs hold about 2**28
    band entries (32 for ConvNet; 512 for FC and ConvVec, whose kernels keep one entry per
    pixel pair). The policy is the kernels' (:func:`kipd.kernels.default_block_side`,
    beside the pairs a kernel computes at once); this names it by kernel.

    Args:
      spec: the kernel.
      image_shape: ``(H, W, C)``.
    """
    in_band = kipd.kernels.architecture(spec.name, depth=spec.depth).band(None)
    assert in_band is not None  # every architecture starts from images: a spatial band
    return kipd.kernels.default_block_side(in_band, image_shape)


def _plan(spec: KernelSpec, images: Any, support_size: int, target_size: int, block_size, **kw):
    if block_size is None:
        block_size = default_block_size(spec, tuple(images.shape[1:]))
    return plan_blocks(support_size, target_size, block_size, **kw)


@functools.cache
def _server_vjp(loss_fn: LossFn):
    def server(k_ss, k_ts, args):
        loss, pullback, aux = jax.vjp(
            lambda a, b, c: loss_fn(a, b, *c), k_ss, k_ts, args, has_aux=True
        )
        return loss, aux, pullback(jnp.ones_like(loss))

    return jax.jit(server)


def value_and_grad(
    loss_fn: LossFn,
    spec: KernelSpec,
    support_images: Any,
    target_images: Any,
    *loss_args: Any,
    executor: Executor | None = None,
    block_size: int | None = None,
    on_block: OnBlock | None = None,
) -> tuple[tuple[jax.Array, Any], tuple[Any, ...]]:
    """A loss of ``K_ss`` and ``K_ts`` and its gradient, computed block by block.

    Args:
      loss_fn: ``loss_fn(k_ss, k_ts, *loss_args) -> (loss, aux)``; jit-able (e.g.
        ``kipd.distill.krr_loss`` with the argument order adapted).
      spec: the kernel.
      support_images: ``(n_s, H, W, C)``, the images differentiated.
      target_images: ``(n_t, H, W, C)``, fixed.
      *loss_args: further arguments of ``loss_fn`` (e.g. support and target labels),
        differentiated too.
      executor: where blocks run (default: a :class:`LocalExecutor`).
      block_size: the block side ``B`` (default: :func:`default_block_size`).
      on_block: called after every block of both passes (progress).

    Returns:
      ``((loss, aux), (d_support_images, *d_loss_args))``, as ``jax.value_and_grad(...,
      argnums=(0, 2, ...), has_aux=True)`` of the whole loss would give them.

    Example:
      >>> def loss(k_ss, k_ts, y):  # doctest: +SKIP
      ...     return jnp.sum(k_ts @ y) + jnp.trace(k_ss), None
      >>> spec = KernelSpec("fc1")
      >>> (value, _), (d_images, d_y) = value_and_grad(loss, spec, xs, xt, y)  # doctest: +SKIP
    """
    executor = executor or LocalExecutor()
    support_images, target_images = np.asarray(support_images), np.asarray(target_images)
    plan = _plan(spec, support_images, len(support_images), len(target_images), block_size)
    shared = {
        "support": pad_rows(support_images, plan.padded_support_size),
        "targets": pad_rows(target_images, plan.padded_target_size),
    }
    # Each block's values come from its linearization, the one forward its gradient also
    # comes from: an executor that keeps a block's pullback (the local one, where it fits
    # its memory) hands it back here, and the others recompute it to the same bits.
    values, pullbacks = zip(*executor.map(spec, "linearize", shared, plan, on_block))
    kept = {"pullbacks": list(pullbacks)} if any(p is not None for p in pullbacks) else {}
    k_ss, k_ts = assemble(plan, list(values))
    loss, aux, (d_k_ss, d_k_ts, d_args) = _server_vjp(loss_fn)(k_ss, k_ts, loss_args)
    shared["d_k_ss"] = pad_matrix(d_k_ss, plan.padded_support_size, plan.padded_support_size)
    shared["d_k_ts"] = pad_matrix(d_k_ts, plan.padded_target_size, plan.padded_support_size)
    d_support = accumulate(plan, executor.map(spec, "vjp", shared, plan, on_block, **kept))
    return (loss, aux), (jnp.asarray(d_support), *d_args)


def kernel_matrix(
    spec: KernelSpec,
    x1: Any,
    x2: Any | None = None,
    *,
    executor: Executor | None = None,
    block_size: int | None = None,
    desc: str | None = None,
) -> np.ndarray:
    """``K(x1, x2)`` by blocks, e.g. a whole test set against a support set.

    Args:
      spec: the kernel.
      x1: ``(n1, H, W, C)`` images (rows).
      x2: ``(n2, H, W, C)`` images (columns); ``None`` for the symmetric ``K(x1, x1)``,
        which computes the blocks of the upper triangle only (and each unordered pair of
        a diagonal block once).
      executor: where blocks run (default: a :class:`LocalExecutor`).
      block_size: the block side ``B`` (default: :func:`default_block_size`).
      desc: label of a progress bar over the blocks; ``None`` shows none.

    Returns:
      ``(n1, n2)`` NumPy array.

    Example:
      >>> kernel_matrix(KernelSpec("fc1"), np.ones((5, 4, 4, 1)), np.ones((2, 4, 4, 1))).shape
      (5, 2)
    """
    executor = executor or LocalExecutor()
    x1 = np.asarray(x1)
    if x2 is None:
        plan: BlockPlan = _plan(spec, x1, len(x1), 0, block_size)
        shared = {"support": pad_rows(x1, plan.padded_support_size)}
    else:
        x2 = np.asarray(x2)
        plan = _plan(spec, x1, len(x2), len(x1), block_size, support_blocks=False)
        shared = {
            "support": pad_rows(x2, plan.padded_support_size),
            "targets": pad_rows(x1, plan.padded_target_size),
        }
    with tqdm(
        total=len(plan.blocks), desc=desc, disable=desc is None, leave=False, unit="block"
    ) as bar:
        results = executor.map(spec, "forward", shared, plan, on_block=bar.update)
    k_ss, k_ts = assemble(plan, results)
    return k_ss if x2 is None else k_ts
