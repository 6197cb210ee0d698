"""The architecture table: FC-n, ConvVec-n and ConvNet as ``serial`` recipes of layers.

One recipe gives both the finite network (``init``/``apply``, for transfer) and the exact
infinite-width kernel (``make``). Conventions follow neural-tangents and the paper
(appendix A): NTK parameterization, ``W_std = sqrt(2)``, ``b_std = 0.1``, 3x3 'SAME'
convolutions, 2x2 average pooling with stride 2.
"""

from __future__ import annotations

import re
from typing import Any

from kipd.kernels._layers import (
    Layer,
    avg_pool,
    conv,
    dense,
    flatten,
    global_avg_pool,
    normalization,
    relu,
    serial,
)

ARCHITECTURES = ("fc<depth>", "convvec<depth>", "convnet", "myrtle5")
_NAME = re.compile(r"^(fc|convvec)(\d+)$|^convnet$|^myrtle5$")


def architecture(
    name: str,
    *,
    width: int = 1,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
    depth: int | None = None,
    out_width: int = 1,
    norm: str | None = None,
) -> Layer:
    """The layer description of a named architecture.

    Args:
      name: ``"fc<n>"`` (Flatten, n x [Dense, ReLU], Dense), ``"convvec<n>"``
        (n x [Conv, ReLU], Flatten, Dense), ``"convnet"`` (Conv, ReLU, then ``depth`` x
        [Conv, ReLU, AvgPool], Flatten, Dense; paper appendix A) or
        ``"myrtle5"`` (Shankar et al. 2020: 2 x [Conv, ReLU], AvgPool, [Conv, ReLU],
        AvgPool, [Conv, ReLU], global average pool, Dense; finite networks only: its
        kernel raises, as kipd's band kernels have no global average pool).
      width: hidden channels / units of the finite network (the kernel ignores it).
      W_std, b_std: weight and bias standard deviations.
      parameterization: ``"ntk"`` or ``"standard"`` (finite network only).
      depth: for ``convnet``, the number of [Conv, ReLU, AvgPool] groups (default 3).
      out_width: units of the readout (1 by default; the number of classes for transfer;
        the kernel ignores it).
      norm: ``None``, or ``"layer"``, ``"instance"``, ``"batch"``: a normalization after
        every hidden Conv / Dense, before its ReLU (Zhao et al. 2021); finite networks
        only (the kernel of a normalized network raises).

    Returns:
      A :class:`~kipd.kernels.Layer` whose output has ``out_width`` units.
    """
    return serial(
        *_layers(
            name,
            width=width,
            W_std=W_std,
            b_std=b_std,
            parameterization=parameterization,
            depth=depth,
            out_width=out_width,
            norm=norm,
        )
    )


def _layers(
    name: str,
    *,
    width: int = 1,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
    depth: int | None = None,
    out_width: int = 1,
    norm: str | None = None,
) -> list[Layer]:
    """The layers of :func:`architecture`, in order."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"unknown architecture {name!r}: use fc<depth>, convvec<depth> or convnet (exact "
            "kernels and finite networks), e.g. 'fc3', 'convvec8' or 'convnet'; or myrtle5 (a "
            "finite network for kipd transfer only: it has no exact kernel)"
        )
    if depth is not None and name != "convnet":
        raise ValueError(
            f"depth= applies to 'convnet' only; {name!r} carries its depth in the name"
        )
    if norm is not None and norm not in ("layer", "instance", "batch"):
        raise ValueError(f"norm must be None, 'layer', 'instance' or 'batch', got {norm!r}")
    if not (isinstance(out_width, int) and out_width >= 1):
        raise ValueError(f"out_width must be an integer >= 1, got {out_width!r}")
    affine: dict[str, Any] = dict(W_std=W_std, b_std=b_std, parameterization=parameterization)
    readout = dense(out_width, **affine)

    def group(layer: Layer) -> list[Layer]:
        # Affine, [normalization], ReLU.
        return [layer, relu()] if norm is None else [layer, normalization(norm), relu()]

    if name == "myrtle5":
        if depth is not None:
            raise ValueError("depth= applies to 'convnet' only; myrtle5 has a fixed depth")
        conv_group = lambda: group(conv(width, **affine))  # noqa: E731
        return [
            *conv_group(),
            *conv_group(),
            avg_pool(),
            *conv_group(),
            avg_pool(),
            *conv_group(),
            global_avg_pool(),
            readout,
        ]
    if name == "convnet":
        depth = 3 if depth is None else depth
        if depth < 0:
            raise ValueError(f"convnet depth must be >= 0 pooling groups, got {depth}")
        pooled = [
            layer for _ in range(depth) for layer in (*group(conv(width, **affine)), avg_pool())
        ]
        return [*group(conv(width, **affine)), *pooled, flatten(), readout]
    kind, hidden = match.group(1), int(match.group(2))
    if kind == "fc":
        hidden_layers = [layer for _ in range(hidden) for layer in group(dense(width, **affine))]
        return [flatten(), *hidden_layers, readout]
    if hidden < 1:
        raise ValueError("convvec needs at least one conv layer, e.g. 'convvec3'")
    hidden_layers = [layer for _ in range(hidden) for layer in group(conv(width, **affine))]
    return [*hidden_layers, flatten(), readout]
