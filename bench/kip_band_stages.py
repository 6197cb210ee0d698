"""What running the ConvNet's later stages in C++ saves in a KIP step.

    python bench/kip_band_stages.py        # ConvNet, 10 support x 100 targets, 28x28x1
    python bench/kip_band_stages.py --targets 100,400 --out /tmp/table.md

Two variants of the same kernel, in one process:

* ``before``: the C++ kernel runs the full-resolution stage (conv, ReLU, conv, ReLU and the
  pooling after it); the later [conv, ReLU, pooling] groups run as XLA layer maps (what
  kipd did before);
* ``now``: those groups run in C++ on the band the stage leaves (``conv_relu_on_band``).

The table gives seconds per KIP step through ``kipd.compute.value_and_grad`` (local
executor: pullbacks kept where they fit; median of ``--repeats`` after a warm-up), the ratio
``before / now``, and the largest difference between the gradients of ``before`` and now
(float32 rounding).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
from unittest import mock

import _report
import jax
import numpy as np

from kipd import compute
from kipd.compute._estimate import _timed  # median after a warm-up
from kipd.kernels import _stages
from kipd.kernels._stages import cpu


def _later_stages_as_layer_maps(**kwargs):
    """The C++ stage without its stages on a band: the later groups run as layer maps."""
    return cpu.stage(**kwargs)._replace(on_band=None)


def _variant(name: str) -> contextlib.AbstractContextManager:
    if name == "before":
        return mock.patch.dict(_stages.FUSED_STAGES, cpu=_later_stages_as_layer_maps)
    return contextlib.nullcontext()


VARIANTS = ("before", "now")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _report.kernel_block_arguments(parser, "support images", repeats=3)
    parser.add_argument("--targets", default="100", help="comma list of target batch sizes")
    parser.add_argument("--out", default="bench/results/kip_band_stages_cpu.md")
    args = parser.parse_args()
    shape = _report.image_shape(args)
    spec = compute.KernelSpec(args.kernel)
    lines = [
        f"Command: `{_report.command_line('kip_band_stages.py', args)}`, "
        f"{datetime.date.today()}, {_report.machine()}.\n",
        f"KIP step through kipd.compute.value_and_grad: {args.kernel}, "
        f"{'x'.join(map(str, shape))} images, {args.support} support, "
        f"{jax.devices()[0].platform}, jax {jax.__version__}; seconds per step\n",
        "| targets | "
        + " | ".join(f"{name} (s)" for name in VARIANTS)
        + " | before / now | max abs grad difference |",
        "|---|---|---|---|---|",
    ]
    for targets, _, _, step in _report.random_kip_steps(args, spec):
        seconds, grads = {}, {}
        for name in VARIANTS:
            # A fresh worker per variant: the kernels are built (and cached) per spec.
            compute._local.block_worker.cache_clear()
            with _variant(name):
                seconds[name] = _timed(step, args.repeats)
                grads[name] = np.asarray(step()[1][0])
        compute._local.block_worker.cache_clear()
        now = VARIANTS[-1]
        difference = float(np.max(np.abs(grads[now] - grads["before"])))
        lines.append(
            f"| {targets} | "
            + " | ".join(f"{seconds[name]:.3f}" for name in VARIANTS)
            + f" | {seconds['before'] / seconds[now]:.2f} | "
            f"{difference:.1e} (of max {np.max(np.abs(grads['before'])):.1e}) |"
        )
    _report.write_table(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
