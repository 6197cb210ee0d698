"""The ``kipd`` command: a thin layer over the public functions of kipd.

Each sub-command parses its options, calls one public function, and prints a summary
table (or JSON with ``--json``). No mathematics lives here. Every option is declared
once, as a field of a dataclass of the layer it belongs to, documented under its
``Attributes:`` (``_options`` builds the flags). One module per command family
(``_run_commands``: distill, label-solve, evaluate, export; ``_transfer``; ``_analysis``:
analyze, report, baseline), assembled by ``_parser``; this module is the entry point and
the error handling.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kipd import compute, runs
from kipd.cli._parser import build_parser, family
from kipd.cli._run_commands import QUICKSTART
from kipd.cli._shared import open_executor

__all__ = ["QUICKSTART", "main"]

# the commands that write a run directory, by name: one that stopped can be continued
_RUN_CONFIGS = {config.COMMAND: config for config in (runs.KipConfig, runs.LabelSolveConfig)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kipd`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _warning
    commands = family(args.command)
    try:
        with open_executor(args) as executor:
            result = commands.run(args, executor)
    except (ValueError, OSError, ImportError, runs.DistillError, compute.ComputeError) as err:
        print(f"kipd {args.command}: error: {err}{_next_step(args, err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nkipd {args.command}: interrupted; {_interrupted(args)}", file=sys.stderr)
        return 130
    print(json.dumps(result) if args.json else commands.format_result(args, result))
    return 0


def _warning(message: Any, category: type, *rest: Any, **kw: Any) -> str:
    return f"kipd: warning: {message}\n"


def _continue_with(args: argparse.Namespace) -> str | None:
    """The command that continues the run in ``--out``, if there is one to continue."""
    config = _RUN_CONFIGS.get(args.command)
    if config is None or args.out is None:  # --plan: no --out
        return None
    if (Path(args.out) / runs.CONFIG_FILE).is_file():
        return runs.resume_command(args.out, config)
    return None


def _next_step(args: argparse.Namespace, err: Exception) -> str:
    """For a run stopped by a full disk: the command that continues it."""
    command = _continue_with(args)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC and command:
        return f"\n{args.out} keeps what it computed; continue with: {command}"
    return ""


def _interrupted(args: argparse.Namespace) -> str:
    command = _continue_with(args)
    if command:
        return f"{args.out} keeps what it computed; continue with: {command}"
    return "nothing was written."
