"""The ``kipd`` command: a thin layer over ``kipd.distill``.

Each sub-command parses its options, calls one public function, and prints a summary
(or JSON with ``--json``). No mathematics lives here.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import kipd
from kipd import compute, distill
from kipd.analysis import _cli as analysis_cli
from kipd.transfer import _cli as transfer_cli

QUICKSTART = "kipd distill --dataset fashion_mnist --kernel fc1 --steps 300 --out runs/quickstart"

_MAIN_EXAMPLES = f"""\
examples:
  # Distill Fashion-MNIST to 1 image per class with KIP (a few minutes on a laptop CPU),
  # then print the KRR test accuracy of the result as JSON:
  {QUICKSTART}
  kipd evaluate runs/quickstart --json

  # The paper's setting (ConvNet kernel, 5000 targets per step; hours to days on a CPU):
  kipd distill --dataset fashion_mnist --kernel convnet --steps 1000 --out runs/convnet

  # Label Solve (eq. 2): the best labels for 10 natural images:
  kipd label-solve --dataset fashion_mnist --kernel convvec3 --out runs/ls

Run 'kipd <command> --help' for the options of a command.
"""

_DISTILL_EXAMPLES = f"""\
examples:
  {QUICKSTART}
  # stopped (Ctrl-C, crash)? continue exactly where the last checkpoint stands:
  kipd distill --out runs/quickstart --resume
  # ... or continue a finished run for more steps:
  kipd distill --out runs/quickstart --resume --steps 600
  # what will the paper's setting cost on this machine? (measures a few blocks, trains nothing)
  kipd distill --kernel convnet --out runs/convnet --plan
  # the same run on a Ray cluster (every GPU of every node):
  kipd distill --kernel convnet --executor ray --ray-address auto --out runs/convnet
  # sampling KIP over a kernel family, 10 images per class, half the targets augmented:
  kipd distill --kernel convnet,convvec3,convvec8 --images-per-class 10 --augment 0.5 --out runs/sampling
"""

_LABEL_SOLVE_EXAMPLES = """\
examples:
  kipd label-solve --dataset fashion_mnist --kernel convvec3 --out runs/ls
  kipd label-solve --dataset cifar10 --kernel fc3 --images-per-class 10 --target-size 20000 --out runs/ls-cifar
"""

_EVALUATE_EXAMPLES = """\
examples:
  kipd evaluate runs/quickstart                 # a run directory: also the natural init
  kipd evaluate runs/quickstart/distilled.npz --kernel convnet --json
  kipd evaluate kip_fashion_mnist.npz --dataset fashion_mnist   # the paper's released layout
"""


def _kernel_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _default(config_class: type, field: str) -> str:
    return f"(default: {getattr(config_class, field)})"


def _add_data_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    parser.add_argument(
        "--dataset",
        metavar="NAME_OR_PATH",
        help="mnist, fashion_mnist, svhn, cifar10, cifar100, or a path to an .npz file "
        f"(x_train, y_train, x_test, y_test) or an image folder {_default(config_class, 'dataset')}",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder searched first for the dataset's files"
    )
    parser.add_argument(
        "--images-per-class",
        type=int,
        metavar="N",
        help=f"support images per class {_default(config_class, 'images_per_class')}",
    )
    parser.add_argument(
        "--zca",
        action=argparse.BooleanOptionalAction,
        help="regularized ZCA preprocessing (default: the paper's choice, ZCA for RGB datasets only)",
    )
    parser.add_argument(
        "--zca-regularization",
        type=float,
        metavar="LAMBDA",
        help="ZCA strength (default: per dataset)",
    )
    parser.add_argument("--seed", type=int, help=f"random seed {_default(config_class, 'seed')}")
    parser.add_argument(
        "--lambda0",
        type=float,
        help=f"relative KRR ridge of eq. (1) {_default(config_class, 'lambda0')}",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        metavar="N",
        help="test images of the final summary, a fixed random subset (default: the whole "
        "test set; a 100-image ConvNet set on all 10,000 takes over an hour on a CPU)",
    )
    parser.add_argument("--out", metavar="RUN_DIR", required=True, help="run directory to write")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="kipd",
        description="Distill image datasets with KIP and Label Solve on exact infinite-width kernels.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"kipd {kipd.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    kip = commands.add_parser(
        "distill",
        help="learn a small support set with KIP",
        description="Learn a support set (images, and labels) with KIP into a run directory: "
        "config.json, metrics.jsonl, checkpoints/, and at the end distilled.npz.",
        epilog=_DISTILL_EXAMPLES,
        formatter_class=formatter,
    )
    _add_data_options(kip, distill.KipConfig)
    kip.add_argument(
        "--kernel",
        dest="kernels",
        type=_kernel_list,
        metavar="NAMES",
        help="architecture(s): fc<n>, convvec<n>, convnet; a comma list samples one per step "
        "(sampling KIP) (default: convnet)",
    )
    kip.add_argument("--steps", type=int, help=f"KIP steps {_default(distill.KipConfig, 'steps')}")
    kip.add_argument(
        "--target-batch-size",
        type=int,
        metavar="N",
        help=f"targets per step {_default(distill.KipConfig, 'target_batch_size')}",
    )
    kip.add_argument(
        "--learn-labels",
        action=argparse.BooleanOptionalAction,
        help="also learn the support labels (default: on)",
    )
    kip.add_argument(
        "--augment",
        type=float,
        metavar="FRACTION",
        help="fraction of each target batch augmented (default: 0)",
    )
    kip.add_argument(
        "--lr", type=float, help="Adam learning rate (default: 0.01 grayscale, 0.04 RGB)"
    )
    kip.add_argument(
        "--init", choices=("natural", "noise"), help="initial support images (default: natural)"
    )
    kip.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="STEPS",
        help=f"steps between checkpoints {_default(distill.KipConfig, 'checkpoint_every')}",
    )
    kip.add_argument(
        "--eval-every",
        type=int,
        metavar="STEPS",
        help=f"test accuracy reading interval {_default(distill.KipConfig, 'eval_every')}",
    )
    kip.add_argument(
        "--eval-size",
        type=int,
        metavar="N",
        help=f"test images of those readings {_default(distill.KipConfig, 'eval_size')}",
    )
    kip.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    kip.add_argument(
        "--plan",
        action="store_true",
        help="train nothing: time a few kernel blocks on this machine and print the cost of "
        "the run (time per step and in all, on 1 and N workers; memory per worker)",
    )
    compute_options = kip.add_argument_group(
        "where the kernel blocks run (same results everywhere; see docs/compute.md)"
    )
    compute_options.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="local: this process's devices (all GPUs of this machine, or the CPU); ray: a "
        "pool of Ray workers, one per GPU or CPU, pip install 'kipd[ray]' (default: local)",
    )
    compute_options.add_argument(
        "--block-size",
        type=int,
        metavar="B",
        help="kernel blocks of at most B x B images (default: per kernel, 32 for convnet)",
    )
    compute_options.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster ('auto', 'host:6379', 'ray://host:10001'); default: start "
        "a local Ray instance",
    )
    compute_options.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="Ray workers (default: one per GPU of the cluster, else one per CPU)",
    )

    ls = commands.add_parser(
        "label-solve",
        help="solve the best labels for natural images (eq. 2)",
        description="Label Solve: the least-norm labels of a class-balanced natural support set "
        "that minimize the KRR loss on the train set.",
        epilog=_LABEL_SOLVE_EXAMPLES,
        formatter_class=formatter,
    )
    _add_data_options(ls, distill.LabelSolveConfig)
    ls.add_argument(
        "--kernel",
        help=f"architecture: fc<n>, convvec<n>, convnet {_default(distill.LabelSolveConfig, 'kernel')}",
    )
    ls.add_argument(
        "--target-size", type=int, metavar="N", help="train images solved on (default: all)"
    )
    ls.add_argument(
        "--rcond",
        type=float,
        help=f"pseudo-inverse cutoff {_default(distill.LabelSolveConfig, 'rcond')}",
    )

    ev = commands.add_parser(
        "evaluate",
        help="KRR test accuracy of a distilled set",
        description="KRR test accuracy on the whole test set of a run directory, its distilled.npz, "
        "or a .npz in the paper's released layout ('images' NHWC preprocessed, 'labels').",
        epilog=_EVALUATE_EXAMPLES,
        formatter_class=formatter,
    )
    ev.add_argument("path", help="run directory or .npz file")
    ev.add_argument(
        "--dataset",
        metavar="NAME_OR_PATH",
        help="test dataset (default: the run's; required for released files)",
    )
    ev.add_argument(
        "--data-dir", metavar="DIR", help="folder searched first for the dataset's files"
    )
    ev.add_argument(
        "--kernel", help="KRR kernel (default: the run's first kernel, convnet for released files)"
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    transfer_cli.add_parser(commands)
    analysis_cli.add_parser(commands)
    return parser


_NOT_CONFIG = {"command", "out", "json", "quiet", "resume", "plan"}


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The config options given on the command line (the rest keep their defaults)."""
    return {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}


def _percent(value: float) -> str:
    return f"{100 * value:6.2f}%"


def _print_summary(summary: dict[str, Any], out: str) -> None:
    method = "KIP" if summary["algorithm"] == "kip" else "Label Solve"
    done = f"{method} ({summary['steps']} steps)" if "steps" in summary else method
    gain = 100 * (summary["test_accuracy"] - summary["init_test_accuracy"])
    width = max(len(done), len("natural init"))
    print(
        f"\n{summary['dataset']}: {summary['support_size']} support images, kernel {summary['kernel']}, "
        f"{summary['seconds']:.0f} s\n"
        f"KRR test accuracy on {summary['test_size']} test images:\n"
        f"  {'natural init':<{width}}  {_percent(summary['init_test_accuracy'])}\n"
        f"  {done:<{width}}  {_percent(summary['test_accuracy'])}  ({gain:+.2f} points)\n"
        f"run directory: {out}"
    )


def _print_evaluation(result: dict[str, Any]) -> None:
    print(
        f"{result['dataset']}: {result['support_size']} support images, kernel {result['kernel']}"
    )
    if "init_test_accuracy" in result:
        print(f"  natural init test accuracy  {_percent(result['init_test_accuracy'])}")
    print(f"  test accuracy               {_percent(result['test_accuracy'])}")


def _distill(args: argparse.Namespace) -> dict[str, Any]:
    options = _options(args)
    config = (
        distill.resume_config(args.out, **options) if args.resume else distill.KipConfig(**options)
    )
    if args.plan:
        return distill.plan_run(config)
    return distill.run_kip(config, args.out, resume=args.resume, progress=not args.quiet)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _print_plan(plan: dict[str, Any]) -> None:
    n = plan["workers"]
    print(
        f"{plan['dataset']}: {plan['support_size']} support images, {plan['target_batch_size']} "
        f"targets per step, {plan['steps']} steps, executor {plan['executor']}"
    )
    for k in plan["kernels"]:
        print(
            f"kernel {k['kernel']}: {k['blocks']} blocks of {k['target_block']}x{k['block_size']} "
            f"images per pass; {k['entries_forward']:,} kernel entries forward and "
            f"{k['entries_vjp']:,} in the VJP per step\n"
            f"  measured here: forward block {k['forward_seconds']['ts']:.3g} s, VJP block "
            f"{k['vjp_seconds']['ts']:.3g} s, server {k['server_seconds']:.2g} s, compile "
            f"{k['compile_seconds']:.1f} s per worker"
        )
    rows = [
        ("", "1 worker", f"{n} workers"),
        ("per step", _duration(plan["step_seconds"]), _duration(plan["step_seconds_workers"])),
        ("whole run", _duration(plan["run_seconds"]), _duration(plan["run_seconds_workers"])),
    ]
    for label, one, many in rows:
        print(f"  {label:<10} {one:>12} {many:>12}")
    print(
        f"  block overhead {1000 * plan['overhead_seconds_per_block']:.2f} ms; peak memory per "
        f"worker {plan['peak_bytes_per_worker'] / 2**20:,.0f} MiB of "
        f"{plan['memory_limit_bytes'] / 2**30:.0f} GiB"
    )
    for warning in plan["warnings"]:
        print(f"warning: {warning}")


def _label_solve(args: argparse.Namespace) -> dict[str, Any]:
    return distill.run_label_solve(
        distill.LabelSolveConfig(**_options(args)), args.out, progress=not args.quiet
    )


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    return distill.evaluate(
        args.path,
        dataset=args.dataset,
        data_dir=args.data_dir,
        kernel=args.kernel,
        progress=not args.quiet,
    )


_COMMANDS = {
    "distill": _distill,
    "label-solve": _label_solve,
    "evaluate": _evaluate,
    "transfer": transfer_cli.run,
    **dict.fromkeys(analysis_cli.COMMANDS, analysis_cli.run),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kipd`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        result = _COMMANDS[args.command](args)
    except (ValueError, OSError, ImportError, distill.DistillError, compute.ComputeError) as err:
        print(f"kipd {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = (
            f"{args.out} keeps its last checkpoint; continue with: kipd distill --out {args.out} --resume"
            if args.command == "distill"
            else "nothing was written."
        )
        print(f"\nkipd {args.command}: interrupted; {where}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    elif args.command == "evaluate":
        _print_evaluation(result)
    elif args.command == "distill" and args.plan:
        _print_plan(result)
    elif args.command == "transfer":
        print(transfer_cli.format_result(result))
    elif args.command in analysis_cli.COMMANDS:
        print(analysis_cli.format_result(result))
    else:
        _print_summary(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
