"""The block plan on this machine: executor overhead, 1 vs 2 Ray workers, --plan's accuracy.

    python bench/scaling.py                 # ConvNet, 28x28x1, a step of 10 support x 100 targets
    python bench/scaling.py --targets 200 --skip-paper

Prints four tables:

1. per-block overhead of the local and Ray executors (trivial blocks), against the compute
   of one ConvNet block at the default block size (the issue's bar: below 10%);
2. one KIP step (forward blocks, loss, VJP blocks) on the local executor and on Ray with 1
   and 2 workers, and the largest difference of the Ray results from the local ones;
3. ``--plan``'s estimated step time against the measured local step;
4. the step-time model for N workers at the paper's setting (100 support x 5000 targets,
   32x32x3) from a block timed here, against the paper's ~460 s per step on one V100.

Ray needs ``pip install 'kipd[ray]'``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from kipd import compute
from kipd.distill import krr_loss

PAPER_V100_STEP_SECONDS = 460.0  # paper §2.1: 100 support x 5000 targets, ConvNet, one V100


def kip_loss(k_ss, k_ts, support_labels, target_labels):
    return krr_loss(k_ts, k_ss, support_labels, target_labels)


def _problem(support: int, targets: int, shape: tuple[int, ...]):
    rng = np.random.default_rng(0)
    labels = np.eye(10, dtype=np.float32)[np.arange(support + targets) % 10] - 0.1
    return (
        rng.standard_normal((support, *shape)).astype(np.float32),
        rng.standard_normal((targets, *shape)).astype(np.float32),
        labels[:support],
        labels[support:],
    )


def _step(spec, problem, executor, block_size, repeats):
    """(median seconds of a step after a warm-up step, the step's result)."""
    result = compute.value_and_grad(
        kip_loss, spec, *problem, executor=executor, block_size=block_size
    )
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = compute.value_and_grad(
            kip_loss, spec, *problem, executor=executor, block_size=block_size
        )
        times.append(time.perf_counter() - started)
    return float(np.median(times)), result


def _max_difference(a, b) -> float:
    (loss_a, _), grads_a = a
    (loss_b, _), grads_b = b
    diffs = [abs(float(loss_a) - float(loss_b))]
    diffs += [
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(grads_a, grads_b)
    ]
    return max(diffs)


def _table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", default="convnet")
    parser.add_argument("--support", type=int, default=10)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-paper", action="store_true", help="skip table 4")
    args = parser.parse_args()
    shape = (28, 28, 1)
    spec = compute.KernelSpec(args.kernel)
    block_size = compute.default_block_size(spec, shape)
    print(
        f"kipd block plan on {os.cpu_count()} CPU cores; kernel {args.kernel}, images {shape}, "
        f"default block size {block_size}"
    )

    # 1. Overhead per block vs one block of compute at the default block size.
    block = compute.estimate_step(spec, shape, block_size, block_size, repeats=args.repeats)
    block_compute = block.forward_seconds["ts"]
    local = compute.LocalExecutor()
    overheads = {"local": compute.block_overhead(local)}
    problem = _problem(args.support, args.targets, shape)
    steps, results = {}, {}
    steps["local"], results["local"] = _step(spec, problem, local, None, args.repeats)
    for workers in (1, 2):
        with compute.RayExecutor(workers=workers) as ray_executor:
            name = f"ray, {workers} worker{'s' * (workers > 1)}"
            overheads[name] = compute.block_overhead(ray_executor)
            steps[name], results[name] = _step(spec, problem, ray_executor, None, args.repeats)
    _table(
        f"1. overhead per block vs one {block_size}x{block_size} {args.kernel} forward block "
        f"({block_compute:.2f} s)",
        ("executor", "overhead per block", "share of a block's compute"),
        [
            (k, f"{1000 * v:.2f} ms", f"{100 * v / block_compute:.3f}%")
            for k, v in overheads.items()
        ],
    )

    # 2. One step on each executor.
    plan = compute.plan_blocks(args.support, args.targets, block_size)
    _table(
        f"2. one KIP step, {args.support} support x {args.targets} targets "
        f"({len(plan.blocks)} blocks per pass)",
        ("executor", "step", "vs local", "max |difference| from local"),
        [
            (
                k,
                f"{v:.2f} s",
                f"{steps['local'] / v:.2f}x",
                f"{_max_difference(results[k], results['local']):.1e}",
            )
            for k, v in steps.items()
        ],
    )

    # 3. --plan's estimate of the same step.
    labels = problem[2], problem[3]
    estimate = compute.estimate_step(
        spec,
        shape,
        args.support,
        args.targets,
        loss_fn=kip_loss,
        loss_args=labels,
        overhead_seconds=overheads["local"],
        repeats=args.repeats,
    )
    predicted, measured = estimate.step_seconds(1), steps["local"]
    _table(
        "3. --plan's estimate vs the measured local step",
        ("estimated", "measured", "error"),
        [
            (
                f"{predicted:.2f} s",
                f"{measured:.2f} s",
                f"{100 * (predicted - measured) / measured:+.1f}%",
            )
        ],
    )

    if args.skip_paper:
        return
    # 4. The paper's setting, modelled from blocks timed here.
    paper = compute.estimate_step(
        spec,
        (32, 32, 3),
        100,
        5000,
        overhead_seconds=overheads["ray, 2 workers"],
        repeats=1,
    )
    rows = [
        (
            n,
            f"{paper.step_seconds(n):,.0f} s",
            f"{paper.step_seconds(n) / PAPER_V100_STEP_SECONDS:.2f}",
        )
        for n in (1, 2, 8, 32, 128)
    ]
    match = math.ceil(
        paper.compute_seconds() / max(PAPER_V100_STEP_SECONDS - paper.step_seconds(10**9), 1e-9)
    )
    _table(
        f"4. modelled step, 100 support x 5000 targets at 32x32x3 ({len(paper.plan.blocks)} blocks "
        f"per pass; forward block {paper.forward_seconds['ts']:.2f} s, VJP block "
        f"{paper.vjp_seconds['ts']:.2f} s on one worker of this machine)",
        (
            "workers like this machine",
            "step",
            f"vs the paper's {PAPER_V100_STEP_SECONDS:.0f} s on one V100",
        ),
        rows,
    )
    print(f"  workers like this machine needed to match one V100 of the paper: {match}")


if __name__ == "__main__":
    main()
