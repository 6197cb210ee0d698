"""The ``kipd transfer`` sub-command: ``add_parser``, ``run(args)`` (the result dict,
printed as JSON with ``--json``) and ``format_result(result)`` (the text table)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from kipd.cli._options import finite, numbers, positive_int
from kipd.transfer import EPOCHS, L2_STRENGTHS, LR_FACTORS, NETWORK_SEEDS, PROTOCOLS, transfer_run

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


def add_parser(
    subparsers: Any,
    add_released_file: Callable[[argparse.ArgumentParser], None],
    add_output: Callable[..., None],
) -> argparse.ArgumentParser:
    """Adds the ``transfer`` sub-command to ``kipd``'s sub-parsers."""
    parser = subparsers.add_parser(
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
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="appendix-a",
        help="appendix-a: the paper's (finite network of --arch, learning rate and L2 chosen "
        "on validation); standard: DC-bench's shared recipe (ConvNet-3 width 128, instance "
        "norm, DSA, SGD 0.01 / 10 at half, weight decay 5e-4, --epochs, mean +- std over "
        "--network-seeds; with --baseline, both sets and the improvement) (default: appendix-a)",
    )
    standard = parser.add_argument_group("the standard protocol (--protocol standard)")
    standard.add_argument(
        "--network-seeds", type=positive_int, default=NETWORK_SEEDS, metavar="N",
        help=f"networks per set (default: {NETWORK_SEEDS})",
    )
    standard.add_argument(
        "--epochs", type=positive_int, default=EPOCHS, metavar="N",
        help=f"passes over the set (default: {EPOCHS})",
    )
    standard.add_argument(
        "--soft-labels", action="store_true",
        help="MSE on the learned labels instead of cross-entropy on their argmax (hard labels)",
    )
    parser.add_argument(
        "--arch",
        default="convnet",
        help="fc<n>, convvec<n>, convnet or myrtle5 (default: convnet)",
    )
    parser.add_argument(
        "--width",
        type=positive_int,
        default=128,
        help="hidden units / channels (default: 128; the paper: 1024)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=5000,
        help="SGD steps (default: 5000, the paper's)",
    )
    parser.add_argument(
        "--lr-factors",
        type=finite(numbers(float, "numbers")),
        default=LR_FACTORS,
        metavar="C,C,...",
        help="learning-rate factors c of c x eta_critical (default: 0.5,1,2,4)",
    )
    parser.add_argument(
        "--l2",
        type=finite(numbers(float, "numbers")),
        default=L2_STRENGTHS,
        metavar="L,L,...",
        help="L2 strengths (default: 0,1e-7,1e-5,1e-3,1e-1)",
    )
    parser.add_argument(
        "--loss",
        choices=("mse", "xent"),
        default="mse",
        help="MSE on the labels, or cross-entropy on their argmax (default: mse)",
    )
    parser.add_argument(
        "--norm",
        choices=("none", "layer", "instance", "batch"),
        default="none",
        help="normalization after each hidden layer, before its ReLU (default: none)",
    )
    parser.add_argument(
        "--eval-every",
        type=positive_int,
        metavar="STEPS",
        help="steps between validation readings (default: steps/50)",
    )
    parser.add_argument(
        "--validation-size",
        type=positive_int,
        default=5000,
        metavar="N",
        help="train images held out for selection (default: 5000)",
    )
    parser.add_argument(
        "--baseline",
        choices=("natural", "init"),
        help="natural images: 'natural', a fresh class-balanced subset of the same size; "
        "'init', the natural images the run started from (paired). appendix-a trains on them "
        "instead of the set; standard trains on both and reports the improvement",
    )
    parser.add_argument(
        "--dataset",
        metavar="NAME_OR_PATH",
        help="dataset (default: the run's; required for released files)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder searched first for the dataset"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_released_file(parser)
    add_output(parser)
    return parser


def run(
    args: argparse.Namespace, log: Callable[[str], None], budget_seconds: float | None
) -> dict[str, Any]:
    """Runs ``kipd transfer`` and returns its result (see ``kipd.transfer.transfer_run``)."""
    return transfer_run(
        args.path,
        protocol=args.protocol,
        network_seeds=args.network_seeds,
        epochs=args.epochs,
        soft_labels=args.soft_labels,
        dataset=args.dataset,
        data_dir=args.data_dir,
        baseline=args.baseline,
        validation_size=args.validation_size,
        seed=args.seed,
        zca=args.zca,
        zca_regularization=args.zca_regularization,
        arch=args.arch,
        width=args.width,
        norm=None if args.norm == "none" else args.norm,
        loss=args.loss,
        steps=args.steps,
        lr_factors=args.lr_factors,
        l2=args.l2,
        eval_every=args.eval_every,
        progress=not (args.quiet or args.json),
        log=log,
        budget_seconds=budget_seconds,
    )


def _standard_table(result: dict[str, Any]) -> str:
    def row(name: str, values: dict[str, Any]) -> str:
        seeds = " ".join(f"{100 * a:.2f}" for a in values["accuracies"])
        return (f"  {name:<22} {100 * values['test_accuracy']:6.2f}% +- "
                f"{100 * values['test_accuracy_std']:.2f}   [{seeds}]")

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


def format_result(result: dict[str, Any]) -> str:
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
        flag = (
            "  <- chosen"
            if chosen
            else ("  (diverged later)" if row["diverged"] else "")
        )
        lines.append(
            f"  {row['lr_factor']:>9g}  {row['l2']:>7g}  {row['learning_rate']:>9.3g}  "
            f"{acc:>7}  {row['step']:>6}{flag}"
        )
    lines.append(
        f"chosen on {result['validation_size']} validation images: lr factor {result['lr_factor']:g}, "
        f"L2 {result['l2']:g}, step {result['step']} (val {100 * result['validation_accuracy']:.2f}%)"
    )
    lines.append(
        f"test accuracy on {result['test_size']} test images: {100 * result['test_accuracy']:.2f}%"
    )
    return "\n".join(lines)
