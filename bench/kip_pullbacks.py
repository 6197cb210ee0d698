"""What keeping each block's pullback between the two passes of a KIP step saves.

    python bench/kip_pullbacks.py          # ConvNet, 10 support x 100 targets, 28x28x1
    python bench/kip_pullbacks.py --support 10 --targets 100,400 --kernel convnet

A step through ``kipd.compute.value_and_grad`` computes every block forward, the loss on
the server, then pulls every block back with its block of ``dL/dK``. The local executor
keeps each block's pullback (its intermediates) from the forward pass when they fit its
``pullback_memory``; with ``pullback_memory=0`` it recomputes each block in the VJP pass
(what the Ray executor's workers, which hold nothing between passes, always do). The table
gives seconds per step (median of ``--repeats`` after a warm-up), the ratio, the memory the
kept pullbacks hold, and the largest difference between the two gradients: zero since kipd
0.5.0 (a recomputed block runs the same linearization and backward programs as a kept one;
float32 rounding before).
"""

from __future__ import annotations

import argparse

import _report
import jax
import numpy as np

from kipd import compute
from kipd.compute._estimate import _timed  # median after a warm-up


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _report.kernel_block_arguments(parser, "support images", repeats=3)
    parser.add_argument("--targets", default="100", help="comma list of target batch sizes")
    args = parser.parse_args()
    shape = _report.image_shape(args)
    spec = compute.KernelSpec(args.kernel)
    keeping, recomputing = compute.LocalExecutor(), compute.LocalExecutor(pullback_memory=0)
    print(
        f"KIP step through kipd.compute.value_and_grad: {args.kernel}, "
        f"{'x'.join(map(str, shape))} images, {args.support} support, "
        f"{jax.devices()[0].platform}, jax {jax.__version__}\n"
    )
    print(
        "| targets | recompute (s) | keep pullbacks (s) | recompute / keep | kept pullbacks (MiB) "
        "| max abs grad difference |"
    )
    print("|---|---|---|---|---|---|")
    for targets, support, target_images, step in _report.random_kip_steps(args, spec):
        seconds, grads = {}, {}
        for name, executor in (("recompute", recomputing), ("keep", keeping)):
            seconds[name] = _timed(lambda: step(executor=executor), args.repeats)
            grads[name] = np.asarray(step(executor=executor)[1][0])
        plan = compute.plan_blocks(args.support, targets, compute.default_block_size(spec, shape))
        shared = {
            "support": compute._plan.pad_rows(support, plan.padded_support_size),
            "targets": compute._plan.pad_rows(target_images, plan.padded_target_size),
        }
        worker = compute._local.block_worker(spec)
        sizes = (plan.support_block, plan.target_block)
        kept = sum(worker.pullback_bytes(shared, sizes, block) for block in plan.blocks)
        difference = float(np.max(np.abs(grads["keep"] - grads["recompute"])))
        print(
            f"| {targets} | {seconds['recompute']:.3f} | {seconds['keep']:.3f} | "
            f"{seconds['recompute'] / seconds['keep']:.2f} | {kept / 2**20:.0f} | "
            f"{difference:.1e} (of max {np.max(np.abs(grads['recompute'])):.1e}) |"
        )


if __name__ == "__main__":
    main()
