"""The ``kipd transfer`` sub-command: its parser (the fields of
:class:`kipd.transfer.TransferOptions` and :class:`kipd.runs.DatasetOptions`),
``run(args, executor)`` (the result dict, printed as JSON with ``--json``) and
``format_result(args, result)`` (the text table)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from kipd import compute, runs
from kipd.cli._options import add_config_options, options_from
from kipd.cli._shared import add_output_options, budget, log
from kipd.transfer import TransferOptions, transfer_run

COMMANDS = ("transfer",)

EXAMPLES = """\
examples:
  # A finite FC1 (width 128) trained on the quick-start distilled set; 1000 SGD steps
  # over the lr-factor x L2 grid, chosen on 5000 validation images, tested on the test set:
  kipd transfer runs/quickstart --arch fc1 --steps 1000
  # the same protocol on 10 natural images (the baseline), as JSON:
  kipd transfer runs/quickstart --arch fc1 --steps 1000 --baseline natural --json
  # ... or on the very natural images KIP started from (what KIP changed, nothing else):
  kipd transfer runs/quickstart --arch fc1 --steps 1000 --baseline init
  # the paper's setting (width 1024, 5000 steps; hours on a CPU), with instance norm:
  kipd transfer runs/convnet --arch convnet --width 1024 --norm instance --loss xent
"""


def add_parsers(commands: Any) -> None:
    """Adds the ``transfer`` sub-command to ``kipd``'s sub-parsers."""
    parser = commands.add_parser(
        "transfer",
        help="train finite-width networks on a distilled set",
        description="Train a finite network (standard parameterization) on a distilled set: SGD, "
        "momentum 0.9, cosine decay; learning rate = factor x the critical learning rate of the "
        "empirical NTK; factor, L2 strength and early-stopping step chosen on a validation split "
        "held out of the train set; the test accuracy of that choice is reported (appendix A).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path", help="run directory, its distilled.npz, an export, or a released .npz"
    )
    add_config_options(parser, TransferOptions)
    add_config_options(parser, runs.DatasetOptions)
    add_output_options(parser)


def option_classes(command: str) -> tuple[type, ...]:
    """The dataclasses whose fields are the options of ``kipd transfer``."""
    return (TransferOptions, runs.DatasetOptions)


def run(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    """Runs ``kipd transfer`` and returns its result (see ``kipd.transfer.transfer_run``);
    it trains in this process (no kernel blocks: ``executor`` is ``None``)."""
    return transfer_run(
        args.path,
        **options_from(args, TransferOptions).keywords(),
        **dataclasses.asdict(options_from(args, runs.DatasetOptions)),
        progress=not (args.quiet or args.json),
        log=log,
        budget_seconds=budget(args),
    )


def _standard_table(result: dict[str, Any]) -> str:
    def row(name: str, values: dict[str, Any]) -> str:
        seeds = " ".join(f"{100 * a:.2f}" for a in values["accuracies"])
        return (
            f"  {name:<22} {100 * values['test_accuracy']:6.2f}% +- "
            f"{100 * values['test_accuracy_std']:.2f}   [{seeds}]"
        )

    lines = [
        f"{result['dataset']}: standard protocol (ConvNet-3 width 128, instance norm, DSA, "
        f"{result['epochs']} epochs, {result['labels']} labels), {result['network_seeds']} "
        f"network seeds, tested on {result['test_size']} images",
        f"  {'set':<22} {'test accuracy':>17}   per seed",
        row(f"distilled ({result['support_size']} images)", result),
    ]
    if "baseline" in result:
        lines.append(row(f"{result['baseline']['source']} (same size)", result["baseline"]))
        lines.append(f"  improvement over the baseline: {100 * result['improvement']:+.2f} points")
    return "\n".join(lines)


def format_result(args: argparse.Namespace, result: dict[str, Any]) -> str:
    """The grid and the chosen setting (appendix A), or the sets' mean +- std (standard),
    as a text table."""
    if result.get("protocol") == "standard":
        return _standard_table(result)
    header = (
        f"{result['dataset']}: {result['support_size']} {result['source']} images -> "
        f"{result['arch']} (width {result['width']}, norm {result['norm'] or 'none'}, "
        f"{result['loss']}, {result['steps']} steps); eta_critical "
        f"{result['critical_learning_rate']:.4g}"
    )
    lines = [
        header,
        f"  {'lr factor':>9}  {'L2':>7}  {'lr':>9}  {'val acc':>7}  {'step':>6}",
    ]
    for row in result["grid"]:
        chosen = row["lr_factor"] == result["lr_factor"] and row["l2"] == result["l2"]
        acc = (
            "diverged"
            if row["validation_accuracy"] is None
            else (f"{100 * row['validation_accuracy']:6.2f}%")
        )
        flag = "  <- chosen" if chosen else ("  (diverged later)" if row["diverged"] else "")
        lines.append(
            f"  {row['lr_factor']:>9g}  {row['l2']:>7g}  {row['learning_rate']:>9.3g}  "
            f"{acc:>7}  {row['step']:>6}{flag}"
        )
    lines.append(
        f"chosen on {result['validation_size']} validation images: lr factor "
        f"{result['lr_factor']:g}, "
        f"L2 {result['l2']:g}, step {result['step']} (val "
        f"{100 * result['validation_accuracy']:.2f}%)"
    )
    lines.append(
        f"test accuracy on {result['test_size']} test images: {100 * result['test_accuracy']:.2f}%"
    )
    return "\n".join(lines)
