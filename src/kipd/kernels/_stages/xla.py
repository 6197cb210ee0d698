"""The full-resolution stage as XLA layer maps: the reference every fused stage must equal.

``make(..., implementation="xla")`` does not go through a :class:`FusedStage`: the two
passes then run the whole network as layer maps (``_grid.py``, ``stage=None``), one
unbroken chain from the input band to the readout. This module gives the stage alone,
which is what the fused kernels' tests compare against.
"""

from __future__ import annotations

import jax

from kipd.kernels._layers import conv, input_state, relu, serial
from kipd.kernels._stages.stage import Variances
from kipd.kernels._state import KernelState


def xla_stage(
    x1: jax.Array,
    x2: jax.Array | None,
    var1: Variances = (),
    var2: Variances = (),
    *,
    radius: int,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
) -> KernelState:
    """The full-resolution stage as layer maps (input band, then ``num_relus`` x
    [conv, ReLU], band of ``radius``).

    Args:
      x1, x2: ``(n1, H, W, C)``, ``(n2, H, W, C)``; ``x2=None`` is the diagonal pass.
      var1, var2: for a grid pass, the variances at each ReLU, ``(n, H, W)`` each.

    Returns:
      The :class:`KernelState` after the stage: ``nngp`` / ``ntk`` of shape
      ``(n1, n2, 2R+1, 2R+1, H, W)`` (grid) or ``(n1, 2R+1, 2R+1, H, W)`` with the
      variances in ``var1`` (diagonal, NNGP only).
    """
    stage = serial(
        *[layer for _ in range(num_relus) for layer in (conv(W_std=W_std, b_std=b_std), relu())]
    )
    state = input_state(
        x1, x2, (radius, radius), with_ntk=x2 is not None, var1=tuple(var1), var2=tuple(var2)
    )
    return stage.kernel(state)
