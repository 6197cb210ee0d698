"""What every benchmark table says about itself: the command that re-runs it, the machine
it ran on, and where it is written; and the options the kernel-block benchmarks share."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path


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
