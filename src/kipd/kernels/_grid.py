"""The two passes of a kernel evaluation, with a choice of full-resolution stage.

A ConvNet kernel spends ~90% of its work in its full-resolution stage: the input band and
every conv and ReLU before the first pooling, on ``(2R_h+1)(2R_w+1)HW`` entries per pair
(230k at 32x32). That stage is either the layer maps themselves (XLA) or a fused kernel
(:class:`FusedStage`: C++ on a CPU, Pallas on a GPU) that computes the same numbers with
each offset plane kept on chip through all its layers. The layers after it (pooling,
Flatten, the readout) always run as layer maps.

Exactness of the diagonal: the ReLU correlation of a pixel with itself is exactly 1 only
if the grid pass's offset-0 covariance of an image with itself equals, bit for bit, the
variance that the diagonal pass recorded. So both passes use the same stage.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax

from kipd.kernels._layers import Layer, conv, input_state, relu, serial
from kipd.kernels._state import KernelState, materialize

Variances = tuple[jax.Array, ...]


class FusedStage(NamedTuple):
    """A fused implementation of the full-resolution stage: the input band, then
    ``num_blocks`` x [conv, ReLU], with hyperparameters (radius, ``W_std``, ``b_std``) bound;
    with ``pools``, also the 2x2 average pooling that follows the stage.

    Attributes:
      band: ``band(x1, x2, var1, var2) -> (nngp, ntk)``: images ``(n1, H, W, C)``,
        ``(n2, H, W, C)``, the variances at each of the stage's ReLUs ``(n, H, W)``;
        outputs ``(n1, n2, 2R_h+1, 2R_w+1, H, W)`` (pooled: the band after the pooling,
        ``(n1, n2, 2R'+1, 2R'+1, H // 2, W // 2)``). Differentiable in all four.
      diagonal: ``diagonal(x, var) -> (nngp, ntk)``, each image with itself,
        ``(n, 2R_h+1, 2R_w+1, H, W)`` (or pooled); differentiable.
      variances: ``variances(x) -> var``, the per-image variances at the stage's ReLUs,
        computed with the same operations as ``band``'s offset 0; differentiable.
      pools: whether ``band`` and ``diagonal`` include the pooling layer after the stage.
    """

    band: Callable[..., tuple[jax.Array, jax.Array]]
    diagonal: Callable[..., tuple[jax.Array, jax.Array]]
    variances: Callable[[jax.Array], Variances]
    pools: bool = False


def split_full_resolution(
    layers: Sequence[Layer], *, with_pool: bool = False
) -> tuple[list[Layer], Layer]:
    """``(stage, rest)``: the leading offsetwise layers (conv, ReLU) and the others.

    With ``with_pool``, the pooling right after them (:func:`pool_follows_stage`) belongs
    to neither: ``rest`` starts after it (a fused stage that pools computes it).
    """
    count = _stage_length(layers)
    skip = 1 if with_pool and pool_follows_stage(layers) else 0
    return list(layers[:count]), serial(*layers[count + skip :])


def pool_follows_stage(layers: Sequence[Layer]) -> bool:
    """Whether a fusable 2x2 average pooling directly follows a non-empty full-resolution
    stage (as in the ConvNet: conv, ReLU, conv, ReLU, pool)."""
    count = _stage_length(layers)
    return 0 < count < len(layers) and layers[count].fusable_pool


def _stage_length(layers: Sequence[Layer]) -> int:
    """How many leading layers are offsetwise (conv, ReLU): the full-resolution stage."""
    count = 0
    while count < len(layers) and layers[count].offsetwise:
        count += 1
    return count


def diagonal_variances(
    layers: Sequence[Layer],
    in_band: tuple[int, int],
    images: jax.Array,
    stage: FusedStage | None = None,
) -> Variances:
    """The variances of ``images`` ``(n, H, W, C)`` at the input of every ReLU, in order
    (the diagonal pass)."""
    pools = stage is not None and stage.pools
    full_resolution, rest = split_full_resolution(layers, with_pool=pools)
    if stage is None or not full_resolution:
        return serial(*layers).kernel(input_state(images, None, in_band, with_ntk=False)).var1
    variances = stage.variances(images)
    nngp, _ = stage.diagonal(images, variances)
    state = KernelState(nngp=nngp, ntk=None, var1=variances, var2=(), diagonal=True)
    return rest.kernel(materialize(state)).var1


def grid_state(
    layers: Sequence[Layer],
    in_band: tuple[int, int],
    images1: jax.Array,
    images2: jax.Array,
    var1: Variances,
    var2: Variances,
    *,
    with_ntk: bool,
    stage: FusedStage | None = None,
) -> KernelState:
    """The kernel state of every pair of ``images1`` ``(b1, H, W, C)`` x ``images2``
    ``(b2, H, W, C)`` after all ``layers`` (the grid pass).

    Args:
      layers: the network, in order.
      in_band: the band of offsets it needs at its input.
      images1, images2: the images of the block.
      var1, var2: their variances at every ReLU (:func:`diagonal_variances`).
      with_ntk: whether to carry the NTK.
      stage: a fused full-resolution stage, or ``None`` for the layer maps.
    """
    pools = stage is not None and stage.pools
    full_resolution, rest = split_full_resolution(layers, with_pool=pools)
    if stage is None or not full_resolution:
        state = input_state(images1, images2, in_band, with_ntk=with_ntk, var1=var1, var2=var2)
        return serial(*layers).kernel(state)
    relus = len(full_resolution) // 2  # [conv, ReLU] pairs
    nngp, ntk = stage.band(images1, images2, var1[:relus], var2[:relus])
    state = KernelState(
        nngp=nngp, ntk=ntk if with_ntk else None, var1=var1[relus:], var2=var2[relus:],
        diagonal=False,
    )
    return rest.kernel(materialize(state))


def xla_stage(
    x1: jax.Array,
    x2: jax.Array | None,
    var1: Variances = (),
    var2: Variances = (),
    *,
    radius: int,
    num_blocks: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
) -> KernelState:
    """The full-resolution stage as layer maps: the reference every :class:`FusedStage`
    must equal (input band, then ``num_blocks`` x [conv, ReLU], band of ``radius``).

    Args:
      x1, x2: ``(n1, H, W, C)``, ``(n2, H, W, C)``; ``x2=None`` is the diagonal pass.
      var1, var2: for a grid pass, the variances at each ReLU, ``(n, H, W)`` each.

    Returns:
      The :class:`KernelState` after the stage: ``nngp`` / ``ntk`` of shape
      ``(n1, n2, 2R+1, 2R+1, H, W)`` (grid) or ``(n1, 2R+1, 2R+1, H, W)`` with the
      variances in ``var1`` (diagonal, NNGP only).
    """
    stage = serial(
        *[layer for _ in range(num_blocks) for layer in (conv(W_std=W_std, b_std=b_std), relu())]
    )
    state = input_state(
        x1, x2, (radius, radius), with_ntk=x2 is not None, var1=tuple(var1), var2=tuple(var2)
    )
    return stage.kernel(state)
