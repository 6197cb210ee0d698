"""The two passes of a kernel evaluation, with a choice of full-resolution stage.

A ConvNet kernel spends ~90% of its work in its full-resolution stage: the input band and
every conv and ReLU before the first pooling, on ``(2R_h+1)(2R_w+1)HW`` entries per pair
(230k at 32x32). That stage is either the layer maps themselves (XLA) or a fused kernel
(:class:`FusedStage`: C++ on a CPU, Pallas on a GPU) that computes the same numbers with
each offset plane kept on chip through all its layers. A fused stage that also computes
the pooling after it may offer the same for the later [conv, ReLU] groups, each with its
pooling (:class:`BandStage`, on the band the previous stage left: the C++ kernel); the
other layers (Flatten, the readout) run as layer maps.

Exactness of the diagonal: the ReLU correlation of a pixel with itself is exactly 1 only
if the grid pass's offset-0 covariance of an image with itself equals, bit for bit, the
variance that the diagonal pass recorded. So both passes use the same stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from kipd.kernels._layers import Layer, input_state, serial
from kipd.kernels._stages.stage import BandStage, FusedStage, Variances
from kipd.kernels._state import KernelState, materialize


def stage_relus(layers: Sequence[Layer]) -> int:
    """How many [conv, ReLU] groups the full-resolution stage (the leading offsetwise
    layers) has."""
    return _stage_length(layers) // 2


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


def _fused_stages(
    layers: Sequence[Layer], stage: FusedStage
) -> tuple[int, list[tuple[BandStage, int]], Layer]:
    """How a pass runs ``layers`` with a fused ``stage``: the ReLUs of the full-resolution
    stage, the band stages after its pooling (each with its number of ReLUs), and the
    layer maps left after them."""
    count = _stage_length(layers)
    position = count + (1 if stage.pools and pool_follows_stage(layers) else 0)
    later = []
    while stage.pools and stage.on_band is not None:
        tail = layers[position:]
        length = _stage_length(tail)
        if length == 0 or length % 2:  # not whole [conv, ReLU] groups: layer maps
            break
        pools = pool_follows_stage(tail)
        later.append((stage.on_band(length // 2, pools), length // 2))
        position += length + (1 if pools else 0)
    return count // 2, later, serial(*layers[position:])


def diagonal_variances(
    layers: Sequence[Layer],
    in_band: tuple[int, int],
    images: jax.Array,
    stage: FusedStage | None = None,
) -> Variances:
    """The variances of ``images`` ``(n, H, W, C)`` at the input of every ReLU, in order
    (the diagonal pass)."""
    if stage is None or not _stage_length(layers):
        return serial(*layers).kernel(input_state(images, None, in_band, with_ntk=False)).var1
    _, later, rest = _fused_stages(layers, stage)
    variances = tuple(stage.variances(images))
    nngp, ntk = stage.diagonal(images, variances)
    for band_stage, _ in later:
        more = tuple(band_stage.variances(nngp))
        nngp, ntk = band_stage.diagonal(nngp, ntk, more)
        variances += more
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
      images1, images2: the images of the chunk.
      var1, var2: their variances at every ReLU (:func:`diagonal_variances`).
      with_ntk: whether to carry the NTK.
      stage: a fused full-resolution stage, or ``None`` for the layer maps.
    """
    if stage is None or not _stage_length(layers):
        state = input_state(images1, images2, in_band, with_ntk=with_ntk, var1=var1, var2=var2)
        return serial(*layers).kernel(state)
    relus, later, rest = _fused_stages(layers, stage)
    nngp, ntk = stage.band(images1, images2, var1[:relus], var2[:relus])
    var1, var2 = var1[relus:], var2[relus:]
    for band_stage, stage_relus in later:
        nngp, ntk = band_stage.band(nngp, ntk, var1[:stage_relus], var2[:stage_relus])
        var1, var2 = var1[stage_relus:], var2[stage_relus:]
    state = KernelState(
        nngp=nngp, ntk=ntk if with_ntk else None, var1=var1, var2=var2, diagonal=False
    )
    return rest.kernel(materialize(state))
