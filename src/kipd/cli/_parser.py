"""The ``kipd`` parser: the top level (description, examples, ``--version``) and the
sub-commands of each command family, which declare their own."""

from __future__ import annotations

import argparse
from types import ModuleType

import kipd
from kipd.cli import _analysis, _run_commands, _transfer
from kipd.cli._run_commands import QUICKSTART

FAMILIES: tuple[ModuleType, ...] = (_run_commands, _transfer, _analysis)
"""The modules of the command families, in ``kipd --help``'s order. Each has
``COMMANDS``, ``add_parsers(commands)``, ``option_classes(command)``,
``run(args, executor)`` and ``format_result(args, result)``."""

_MAIN_EXAMPLES = f"""\
examples:
  # Distill Fashion-MNIST to 1 image per class with KIP (a few minutes on a laptop CPU),
  # then print the KRR test accuracy of the result as JSON:
  {QUICKSTART}
  kipd evaluate runs/quickstart --json

  # The paper's setting (ConvNet kernel, 5000 targets per step; days on a CPU: kipd prints
  # an estimate: line first and, past a day, asks for --yes):
  kipd distill --dataset fashion_mnist --kernel convnet --steps 1000 --out runs/convnet --yes

  # Ship the result (with its preprocessing) and compare it under the field's protocol:
  kipd export runs/quickstart --out exports/quickstart
  kipd transfer exports/quickstart --protocol standard --baseline natural

  # Label Solve (eq. 2): the best labels for 10 natural images:
  kipd label-solve --dataset fashion_mnist --kernel convvec3 --out runs/ls

Run 'kipd <command> --help' for the options of a command.
"""


def family(command: str) -> ModuleType:
    """The module of the family ``command`` belongs to."""
    return next(module for module in FAMILIES if command in module.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``kipd`` and all its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="kipd",
        description=(
            "Distill image datasets with KIP and Label Solve on exact infinite-width kernels."
        ),
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kipd {kipd.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in FAMILIES:
        module.add_parsers(commands)
    return parser
