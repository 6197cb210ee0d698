"""Time one KIP step (kernels, loss, gradient, Adam update) on this machine.

    python bench/kip_step.py                       # convnet, 100 support, 500 and 5000 targets
    python bench/kip_step.py --kernel convvec3 --targets 500,5000,20000

A step's cost is linear in its kernel pairs, ``n_t * n_s + n_s**2``. Each target batch
whose predicted step time fits ``--budget-s`` is measured (compiled first, then timed
over ``--repeats`` steps); a larger one is printed as an estimate from the per-pair time
of the largest measured step, and marked so.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import optax

import kipd.kernels
from kipd import distill


def _step_seconds(
    kernel, num_support: int, num_targets: int, shape: tuple[int, ...], repeats: int
) -> float:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    support = jax.random.normal(keys[0], (num_support, *shape))
    targets = jax.random.normal(keys[1], (num_targets, *shape))
    labels = jnp.eye(10)[jnp.arange(num_support + num_targets) % 10] - 0.1
    algo = distill.kip(kernel, optax.adam(0.01))
    state = algo.init(support, labels[:num_support], jax.random.PRNGKey(1))
    step = jax.jit(algo.update).lower(state, targets, labels[num_support:]).compile()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        state, metrics = step(state, targets, labels[num_support:])
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", default="convnet")
    parser.add_argument("--support", type=int, default=100, help="support images")
    parser.add_argument("--targets", default="500,5000", help="comma list of target batch sizes")
    parser.add_argument("--image-shape", default="28,28,1", help="H,W,C")
    parser.add_argument(
        "--probe", type=int, default=10, help="target batch of the first, measured step"
    )
    parser.add_argument(
        "--budget-s", type=float, default=600.0, help="measure a step only if predicted below this"
    )
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.image_shape.split(","))
    kernel = functools.partial(kipd.kernels.make(args.kernel), get="ntk")

    def pairs(n_t: int) -> int:
        return n_t * args.support + args.support**2

    print(
        f"KIP step: kernel {args.kernel}, images {'x'.join(map(str, shape))}, {args.support} "
        "support, "
        f"{jax.devices()[0].platform} ({os.cpu_count()} cores), jax {jax.__version__}"
    )
    probe = _step_seconds(kernel, args.support, args.probe, shape, args.repeats)
    per_pair = probe / pairs(args.probe)
    print(f"{'targets':>8} {'kernel pairs':>13} {'step (s)':>10}  how")
    print(f"{args.probe:>8} {pairs(args.probe):>13,} {probe:>10.1f}  measured (probe)")
    for n_t in sorted(int(t) for t in args.targets.split(",")):
        predicted = per_pair * pairs(n_t)
        if predicted <= args.budget_s:
            seconds = _step_seconds(kernel, args.support, n_t, shape, args.repeats)
            per_pair = seconds / pairs(n_t)
            print(f"{n_t:>8} {pairs(n_t):>13,} {seconds:>10.1f}  measured")
        else:
            print(
                f"{n_t:>8} {pairs(n_t):>13,} {predicted:>10.0f}  estimated from the largest "
                "measured step (over --budget-s)"
            )


if __name__ == "__main__":
    main()
