"""What a fused implementation of a stage hands the two passes (``_grid.py``).

A fused stage computes the same numbers as the layer maps of its [conv, ReLU] groups
(``xla.py``, the reference) with each offset plane kept on chip through all of them. What
an implementation can do beyond the full-resolution stage is declared in the record it
returns (``pools``, ``on_band``), so the passes never ask a module what it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import jax

Variances = tuple[jax.Array, ...]


class BandStage(NamedTuple):
    """A fused stage on a band: ``num_relus`` x [conv, ReLU] after a pooling, with the
    pooling after them when ``pool`` (hyperparameters bound).

    Attributes:
      band: ``band(nngp, ntk, var1, var2) -> (nngp, ntk)``: input bands
        ``(n1, n2, 2R+1, 2R+1, H, W)``, the variances at each of its ReLUs ``(n, H, W)``;
        outputs as the layers give them (pooled: ``(n1, n2, 2R'+1, 2R'+1, H // 2, W // 2)``).
      diagonal: ``diagonal(nngp, ntk, var) -> (nngp, ntk)``, each image's own band
        ``(n, 2R+1, 2R+1, H, W)``.
      variances: ``variances(nngp) -> var`` from each image's own NNGP band, with the same
        operations as ``band``'s offset 0.
    """

    band: Callable[..., tuple[jax.Array, jax.Array]]
    diagonal: Callable[..., tuple[jax.Array, jax.Array]]
    variances: Callable[[jax.Array], Variances]


class FusedStage(NamedTuple):
    """A fused implementation of the full-resolution stage: the input band, then
    ``num_relus`` x [conv, ReLU], with hyperparameters (radius, ``W_std``, ``b_std``) bound;
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
      on_band: with ``pools``, ``on_band(num_relus, pool) -> BandStage`` for the
        [conv, ReLU] groups after the pooling (None: those run as layer maps).
    """

    band: Callable[..., tuple[jax.Array, jax.Array]]
    diagonal: Callable[..., tuple[jax.Array, jax.Array]]
    variances: Callable[[jax.Array], Variances]
    pools: bool = False
    on_band: Callable[[int, bool], BandStage] | None = None


class StageFactory(Protocol):
    """A backend's one factory: the :class:`FusedStage` it supports for a stage of
    ``num_relus`` x [conv, ReLU] on a square band of ``radius``; ``pool``: a 2x2 average
    pooling follows the stage (the stage fuses it only if the backend can, ``pools``)."""

    def __call__(
        self, *, radius: int, num_relus: int, W_std: float, b_std: float, pool: bool
    ) -> FusedStage: ...
