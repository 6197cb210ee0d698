"""What every benchmark table says about itself: the command that re-runs it, the machine
it ran on, and where it is written."""

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
