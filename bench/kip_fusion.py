"""What a block of target rows costs: forward, VJP, and both fused into one task.

    python bench/kip_fusion.py                       # ConvNet, 25 targets x 10 support, 28x28x1
    python bench/kip_fusion.py --targets 25 --support 10 --implementations cpu,xla

A KIP step computes each target block twice (``kipd.compute.value_and_grad``): its kernel
values in the forward pass (the server needs them for the loss), then their VJP with the
block of ``dL/dK``. A task that computed the block's kernel values, its loss and the VJP in
one go would seem to save the forward pass. The table measures whether it does: the
kernels rematerialize each internal block (``jax.checkpoint``) and the fused C++ stage
recomputes its forward inside its backward, so a VJP whose output is not used skips the
forward's output, and one whose output is used (the fused task) pays for it again.

Columns, seconds per call (median of ``--repeats`` after a warm-up): ``forward`` (the
kernel values), ``vjp`` (pulled back with a fixed cotangent, output unused), ``fused``
(``jax.value_and_grad`` of a KRR loss of the block: kernel values used), and
``fused / (forward + vjp)``.
"""

from __future__ import annotations

import argparse

import _report
import jax
import jax.numpy as jnp
import numpy as np

import kipd.kernels
from kipd.compute._estimate import _timed as _seconds  # median after a warm-up


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _report.kernel_block_arguments(parser, "support images (columns)", repeats=5)
    parser.add_argument("--targets", type=int, default=25, help="rows of the block")
    parser.add_argument("--implementations", default="cpu,xla", help="comma list")
    args = parser.parse_args()
    shape = _report.image_shape(args)
    rng = np.random.default_rng(0)
    targets = jnp.asarray(rng.standard_normal((args.targets, *shape)), jnp.float32)
    support = jnp.asarray(rng.standard_normal((args.support, *shape)), jnp.float32)
    alpha = jnp.asarray(rng.standard_normal((args.support, 10)), jnp.float32)
    labels = jnp.asarray(rng.standard_normal((args.targets, 10)), jnp.float32)
    cotangent = jnp.ones((args.targets, args.support), jnp.float32)
    print(
        f"{args.kernel}, {args.targets} x {args.support} pairs of {'x'.join(map(str, shape))} "
        f"images, {jax.devices()[0].platform}, jax {jax.__version__}\n"
    )
    print("| implementation | forward (s) | vjp (s) | fused (s) | fused / (forward + vjp) |")
    print("|---|---|---|---|---|")
    for implementation in args.implementations.split(","):
        kernel = kipd.kernels.make(args.kernel, implementation=implementation)

        def block(columns):
            return kernel(targets, columns, get="ntk")

        def vjp(columns):
            return jax.vjp(block, columns)[1](cotangent)[0]

        def loss(columns):
            return 0.5 * jnp.mean((labels - block(columns) @ alpha) ** 2)

        forward_fn, vjp_fn = jax.jit(block), jax.jit(vjp)
        fused_fn = jax.jit(jax.value_and_grad(loss))
        forward_s = _seconds(lambda: forward_fn(support), args.repeats)
        vjp_s = _seconds(lambda: vjp_fn(support), args.repeats)
        fused_s = _seconds(lambda: fused_fn(support), args.repeats)
        print(
            f"| {implementation} | {forward_s:.3f} | {vjp_s:.3f} | {fused_s:.3f} | "
            f"{fused_s / (forward_s + vjp_s):.2f} |"
        )


if __name__ == "__main__":
    main()
