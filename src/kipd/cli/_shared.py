"""What every command family shares: the output switches (``--json``, ``--quiet``,
``--yes``), where the kernel blocks run (``--executor`` ...), the status log and the
one-day budget."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from kipd import compute
from kipd.cli._options import add_config_options, options_from


def add_output_options(parser: argparse.ArgumentParser, costly: bool = True) -> None:
    """``--json`` and ``--quiet`` (every command), and ``--yes`` (a command that says what
    it will cost before it starts)."""
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (the estimate: line stays)"
    )
    if costly:
        parser.add_argument(
            "--yes",
            action="store_true",
            help="start even if estimated to take more than a day (the estimate: line printed "
            "first says how long)",
        )


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--ray-address``, ``--workers`` (:class:`kipd.compute.ExecutorConfig`)."""
    group = parser.add_argument_group(
        "where the kernel blocks run (same results everywhere; see docs/compute.md)"
    )
    add_config_options(group, compute.ExecutorConfig)


def open_executor(args: argparse.Namespace) -> Any:
    """The executor of a command that computes kernels (a context manager that closes it),
    or ``None`` for one that does not (its parser has no ``--executor``; ``--plan``)."""
    if not hasattr(args, "executor") or getattr(args, "plan", False):
        return contextlib.nullcontext(None)
    return executor_config(args).make()


def executor_config(args: argparse.Namespace) -> compute.ExecutorConfig:
    """Where the command line asks the kernel blocks to run."""
    return options_from(args, compute.ExecutorConfig)


def log(line: str) -> None:
    """Status lines (loading, estimate:, compiling) go to stderr, so --json stays clean."""
    print(line, file=sys.stderr, flush=True)


def budget(args: argparse.Namespace) -> float | None:
    """The longest a command may be estimated to run without ``--yes``."""
    return None if getattr(args, "yes", True) else compute.DAY_SECONDS
