"""What every benchmark table says about itself: the command that re-runs it, the machine
it ran on, and where it is written; and the options and random KIP steps the kernel-block
benchmarks share."""

from __future__ import annotations

import argparse
import functools
import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


def command_line(script: str, args: argparse.Namespace) -> str:
    """``python bench/SCRIPT --option value ...``: the options of ``args`` that were set,
    without ``--out`` (where the table goes does not change it)."""
    options = " ".join(
        f"--{name.replace('_', '-')} {value}"
        for name, value in vars(args).items()
        if name != "out" and value is not None
    )
    return f"python bench/{script} {options}"


def kernel_block_arguments(
    parser: argparse.ArgumentParser, support_help: str, repeats: int
) -> None:
    """The options of the benchmarks that time a kernel's blocks on random images:
    ``--kernel``, ``--support``, ``--image-shape`` (``args.image_shape`` is then a string
    "H,W,C"; :func:`image_shape` reads it) and ``--repeats``."""
    parser.add_argument("--kernel", default="convnet")
    parser.add_argument("--support", type=int, default=10, help=support_help)
    parser.add_argument("--image-shape", default="28,28,1", help="H,W,C")
    parser.add_argument("--repeats", type=int, default=repeats)


def image_shape(args: argparse.Namespace) -> tuple[int, ...]:
    """``(H, W, C)`` of ``--image-shape``."""
    return tuple(int(s) for s in args.image_shape.split(","))


def random_kip_steps(
    args: argparse.Namespace, spec
) -> Iterator[tuple[int, np.ndarray, np.ndarray, Callable]]:
    """For each of ``--targets`` (a comma list): ``(targets, support, target_images,
    step)``, with ``step(**kwargs)`` one KIP step through ``kipd.compute.value_and_grad``
    (the KRR loss, labels learned) on random images of ``--image-shape``, ``--support`` of
    them learned; ``kwargs`` (``executor=``) are passed on."""
    from kipd import compute
    from kipd.distill import krr_loss

    shape = image_shape(args)
    rng = np.random.default_rng(0)
    loss = lambda k_ss, k_ts, y_s, y_t: krr_loss(k_ts, k_ss, y_s, y_t)  # noqa: E731
    for targets in (int(t) for t in args.targets.split(",")):
        support = rng.standard_normal((args.support, *shape)).astype(np.float32)
        target_images = rng.standard_normal((targets, *shape)).astype(np.float32)
        y_s = rng.standard_normal((args.support, 10)).astype(np.float32)
        y_t = rng.standard_normal((targets, 10)).astype(np.float32)
        step = functools.partial(
            compute.value_and_grad, loss, spec, support, target_images, y_s, y_t
        )
        yield targets, support, target_images, step


def machine() -> str:
    """``N CPU cores (processor)`` of this machine."""
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"


def write_table(out: str | Path, text: str) -> None:
    """Prints a benchmark's markdown table and writes it to ``out`` (folders made)."""
    print(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written: {out}")
