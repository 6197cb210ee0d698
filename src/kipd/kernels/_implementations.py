"""Which full-resolution stage runs: the XLA layer maps or a fused kernel, per backend.

A fused kernel is a module with ``conv_relu_band``, ``conv_relu_variances`` and
(optionally) ``conv_relu_band_diagonal``, and (optionally, with the pooling fused) the
stages after a pooling, ``conv_relu_on_band`` / ``_diagonal`` / ``_variances``: ``_cpu``
(C++ through XLA's FFI) and ``_pallas`` (Pallas, Triton backend). ``auto`` takes the C++
kernel on a CPU (measured faster than the layer maps, see docs/kernels.md) and, on a GPU,
whichever of the XLA layer maps and the Pallas kernel a short calibration measures faster
for the architecture and image shape.
"""

from __future__ import annotations

import functools
import importlib
import time
from typing import Hashable

import jax
import jax.numpy as jnp
import numpy as np

from kipd.kernels._grid import BandStage, FusedStage

_MODULES = {"cpu": "kipd.kernels._cpu", "pallas": "kipd.kernels._pallas"}


def fused_stage(
    implementation: str,
    *,
    radius: tuple[int, int],
    num_blocks: int,
    W_std: float,
    b_std: float,
    pool: bool = False,
) -> FusedStage:
    """The :class:`FusedStage` of ``implementation`` (``"cpu"`` or ``"pallas"``) for a
    stage of ``num_blocks`` x [conv, ReLU] on a band of ``radius``.

    With ``pool`` (a 2x2 average pooling follows the stage), an implementation that can
    fuse it (``FUSES_POOL``: the C++ kernel) computes it too, and the stage ``pools``; if
    it also runs stages on a band (the C++ kernel), the later [conv, ReLU] blocks and their
    poolings run fused too (``on_band``).

    Raises:
      RuntimeError: the C++ kernel could not be compiled here (the message says why).
    """
    if radius[0] != radius[1]:
        raise ValueError(f"the fused kernels take a square band, got radius {radius}")
    module = importlib.import_module(_MODULES[implementation])
    if implementation == "cpu" and not module.available():
        raise RuntimeError(
            f"implementation='cpu' needs the C++ kernel, which did not build: "
            f"{module.build_error()}; install g++ or use implementation='xla'"
        )
    hyper = dict(num_blocks=num_blocks, W_std=W_std, b_std=b_std)
    pools = pool and getattr(module, "FUSES_POOL", False)
    fused = dict(pool=True) if pools else {}
    band = functools.partial(module.conv_relu_band, radius=radius[0], **hyper, **fused)
    if hasattr(module, "conv_relu_band_diagonal"):
        diagonal = functools.partial(
            module.conv_relu_band_diagonal, radius=radius[0], **hyper, **fused
        )
    else:

        def diagonal(images, variances):
            def one(image_and_variances):
                image, image_variances = image_and_variances
                side = tuple(v[None] for v in image_variances)
                nngp, ntk = band(image[None], image[None], side, side)
                return nngp[0, 0], ntk[0, 0]

            return jax.lax.map(one, (images, tuple(variances)))

    variances = functools.partial(module.conv_relu_variances, **hyper)
    on_band = None
    if pools and hasattr(module, "conv_relu_on_band"):

        def on_band(num_blocks: int, pool: bool) -> BandStage:
            later = dict(num_blocks=num_blocks, W_std=W_std, b_std=b_std)
            return BandStage(
                band=functools.partial(module.conv_relu_on_band, **later, pool=pool),
                diagonal=functools.partial(module.conv_relu_on_band_diagonal, **later, pool=pool),
                variances=functools.partial(module.conv_relu_on_band_variances, **later),
            )

    return FusedStage(
        band=band, diagonal=diagonal, variances=variances, pools=pools, on_band=on_band
    )


def cpu_kernel_available() -> bool:
    """Whether the C++ kernel compiled on this machine (compiling it on first call)."""
    return importlib.import_module(_MODULES["cpu"]).available()


@functools.cache
def auto_implementation(architecture: Hashable, image_shape: tuple[int, ...], backend: str) -> str:
    """The implementation ``"auto"`` resolves to for a kernel, image shape and backend.

    Args:
      architecture: ``(name, W_std, b_std, depth)`` as given to ``make``.
      image_shape: ``(H, W, C)``.
      backend: JAX's backend name.
    """
    if backend == "cpu":
        return "cpu" if cpu_kernel_available() else "xla"
    return _calibrate(architecture, image_shape, ("xla", "pallas"))


def _calibrate(architecture, image_shape, candidates) -> str:
    """The fastest of ``candidates`` on a 16 x 16 block of random images (forward)."""
    from kipd.kernels._architectures import make  # the kernels are built from make itself

    name, W_std, b_std, depth = architecture
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 16, *image_shape), dtype=np.float32)
    seconds = {}
    # A kernel traced inside another jit calls this while tracing: evaluate eagerly.
    with jax.ensure_compile_time_eval():
        for implementation in candidates:
            try:
                kernel = make(
                    name, W_std=W_std, b_std=b_std, depth=depth, implementation=implementation
                )
                x1, x2 = jnp.asarray(images[0]), jnp.asarray(images[1])
                kernel(x1, x2).block_until_ready()
                start = time.perf_counter()
                kernel(x1, x2).block_until_ready()
                seconds[implementation] = time.perf_counter() - start
            except Exception:  # noqa: BLE001 - a path that fails here is simply not chosen
                continue
    return min(seconds, key=seconds.get) if seconds else "xla"
