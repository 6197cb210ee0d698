"""The ``kipd`` command: a thin layer over the public functions of kipd.

Each sub-command parses its options, calls one public function, and prints a summary
table (or JSON with ``--json``). No mathematics lives here. Options are declared once:
those of a run from the fields and documented attributes of its config dataclass
(``_options``), those of where blocks run from :class:`kipd.compute.ExecutorConfig`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import kipd
from kipd import compute, runs
from kipd.cli import _analysis, _transfer
from kipd.cli._options import add_config_options, config_options, finite

__all__ = ["QUICKSTART", "main"]

QUICKSTART = "kipd distill --dataset fashion_mnist --kernel fc1 --steps 300 --out runs/quickstart"

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

_DISTILL_EXAMPLES = f"""\
examples:
  {QUICKSTART}
  # stopped (Ctrl-C, crash)? continue exactly where the last checkpoint stands:
  kipd distill --out runs/quickstart --resume
  # ... or continue a finished run for more steps:
  kipd distill --out runs/quickstart --resume --steps 600
  # what will the paper's setting cost on this machine? (measures a few blocks, trains nothing)
  kipd distill --kernel convnet --plan
  # the same run on a Ray cluster (every GPU of every node):
  kipd distill --kernel convnet --executor ray --ray-address auto --out runs/convnet
  # sampling KIP over a kernel family, 10 images per class, half the targets augmented:
  kipd distill --kernel convnet,convvec3,convvec8 --images-per-class 10 --augment 0.5 --out runs/sampling
"""

_LABEL_SOLVE_EXAMPLES = """\
examples:
  kipd label-solve --dataset fashion_mnist --kernel convvec3 --out runs/ls
  kipd label-solve --dataset cifar10 --kernel fc3 --images-per-class 10 --target-size 20000 --out runs/ls-cifar
  kipd label-solve --preset paper --images-per-class 10 --out runs/ls10   # ~1.7 h on 2 CPU cores
  kipd label-solve --out runs/ls10 --resume      # after a kill: only the missing kernel rows
"""

_EXPORT_EXAMPLES = """\
examples:
  kipd export runs/quickstart --out exports/quickstart
  kipd evaluate exports/quickstart          # the run's test accuracy, exactly
"""

_EVALUATE_EXAMPLES = """\
examples:
  kipd evaluate runs/quickstart                 # a run directory: also the natural init
  kipd evaluate runs/quickstart/distilled.npz --kernel convnet --json
  kipd evaluate kip_fashion_mnist.npz --dataset fashion_mnist   # the paper's released layout
  kipd evaluate exports/quickstart              # a folder written by kipd export
"""


_FORMATTER = argparse.RawDescriptionHelpFormatter


def add_released_file_options(parser: argparse.ArgumentParser) -> None:
    """``--zca`` / ``--zca-regularization`` for a file that does not record its preprocessing."""
    group = parser.add_argument_group(
        "preprocessing of a released .npz (kipd runs and exports record their own)"
    )
    group.add_argument(
        "--zca",
        action=argparse.BooleanOptionalAction,
        help="regularized ZCA (default: the paper's choice for the dataset, ZCA for RGB)",
    )
    group.add_argument(
        "--zca-regularization", type=finite(float), metavar="LAMBDA", help="ZCA strength (default: per dataset)"
    )


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--ray-address``, ``--workers`` (:class:`kipd.compute.ExecutorConfig`)."""
    group = parser.add_argument_group(
        "where the kernel blocks run (same results everywhere; see docs/compute.md)"
    )
    add_config_options(group, compute.ExecutorConfig)


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


def log(line: str) -> None:
    """Status lines (loading, estimate:, compiling) go to stderr, so --json stays clean."""
    print(line, file=sys.stderr, flush=True)


def budget(args: argparse.Namespace) -> float | None:
    """The longest a command may be estimated to run without ``--yes``."""
    return None if getattr(args, "yes", True) else compute.DAY_SECONDS


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kipd",
        description="Distill image datasets with KIP and Label Solve on exact infinite-width kernels.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"kipd {kipd.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    kip = commands.add_parser(
        "distill",
        help="learn a small support set with KIP",
        description="Learn a support set (images, and labels) with KIP into a run directory: "
        "config.json, metrics.jsonl, checkpoints/, and at the end distilled.npz.",
        epilog=_DISTILL_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    add_config_options(kip, runs.KipConfig)
    kip.add_argument(
        "--out", metavar="RUN_DIR", help="run directory to write (required unless --plan)"
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
    add_executor_options(kip)
    add_output_options(kip)

    ls = commands.add_parser(
        "label-solve",
        help="solve the best labels for natural images (eq. 2)",
        description="Label Solve: the least-norm labels of a class-balanced natural support set "
        "that minimize the KRR loss on the train set.",
        epilog=_LABEL_SOLVE_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    add_config_options(ls, runs.LabelSolveConfig, docs=[runs.KipConfig])
    ls.add_argument("--out", metavar="RUN_DIR", required=True, help="run directory to write")
    ls.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with the kernel rows it has saved",
    )
    add_executor_options(ls)
    add_output_options(ls)

    ev = commands.add_parser(
        "evaluate",
        help="KRR test accuracy of a distilled set",
        description="KRR test accuracy of a run directory (on the test images of its summary), "
        "its distilled.npz, or a .npz in the paper's released layout ('images' NHWC "
        "preprocessed, 'labels'; on the whole test set).",
        epilog=_EVALUATE_EXAMPLES,
        formatter_class=_FORMATTER,
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
    add_released_file_options(ev)
    add_executor_options(ev)
    add_output_options(ev)

    ex = commands.add_parser(
        "export",
        help="write a finished run's distilled set as a self-describing folder",
        description="Write DIR/distilled.npz (images in model-input space and in pixels, "
        "labels learned and argmax, the initial set, the preprocessing as arrays, the config, "
        "the test indices) and DIR/card.json (what every array is, the dataset, kernel, "
        "accuracies). kipd evaluate DIR and kipd transfer DIR read it back; docs/export.md "
        "shows how to load it in NumPy and PyTorch.",
        epilog=_EXPORT_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    ex.add_argument("--out", metavar="DIR", required=True, help="folder to write (new or empty)")
    add_output_options(ex, costly=False)
    _transfer.add_parser(commands, add_released_file_options, add_output_options)
    _analysis.add_parsers(commands, add_executor_options, add_output_options)
    return parser


def _percent(value: float) -> str:
    return f"{100 * value:6.2f}%"


def _print_summary(summary: dict[str, Any], out: str) -> None:
    method = "KIP" if summary["algorithm"] == "kip" else "Label Solve"
    done = f"{method} ({summary['steps']} steps)" if "steps" in summary else method
    rows = [("natural init", _percent(summary["init_test_accuracy"]), "")]
    gain = 100 * (summary["test_accuracy"] - summary["init_test_accuracy"])
    rows.append((done, _percent(summary["test_accuracy"]), f"({gain:+.2f} points)"))
    if "best_checkpoints_test_accuracy" in summary:
        steps = ",".join(map(str, summary["best_checkpoints"]))
        rows.append((
            f"{len(summary['best_checkpoints'])} lowest-loss checkpoints",
            _percent(summary["best_checkpoints_test_accuracy"]),
            f"+- {100 * summary['best_checkpoints_test_accuracy_std']:.2f} (steps {steps}; "
            "Table 1's protocol)",
        ))
    if "paper_test_accuracy" in summary:
        std = summary["paper_test_accuracy_std"]
        rows.append((
            "paper, Table 1",
            _percent(summary["paper_test_accuracy"]),
            ("" if std is None else f"+- {100 * std:.1f} ")
            + f"(gap {100 * summary['gap_to_paper']:+.2f} points)",
        ))
    width = max(len(label) for label, _, _ in rows)
    lines = [f"  {label:<{width}}  {value}  {note}".rstrip() for label, value, note in rows]
    preset = ""
    if summary.get("preset"):
        given = ", ".join(summary["preset_overrides"]) or "none"
        preset = f"preset {summary['preset']} (overridden: {given})\n"
    print(
        f"\n{summary['dataset']}: {summary['support_size']} support images, kernel {summary['kernel']}, "
        f"{_duration(summary)}\n{preset}"
        f"KRR test accuracy on {summary['test_size']} test images:\n"
        + "\n".join(lines)
        + f"\nrun directory: {out}"
    )


def _duration(summary: dict[str, Any]) -> str:
    """This command's wall time, and the whole run's where earlier legs add to it."""
    seconds, run_seconds = summary["seconds"], summary.get("run_seconds", summary["seconds"])
    if run_seconds - seconds < 1:
        return f"{seconds:.0f} s"
    return f"{seconds:.0f} s ({run_seconds:.0f} s in all, earlier legs of the run included)"


def _print_evaluation(result: dict[str, Any]) -> None:
    print(
        f"{result['dataset']}: {result['support_size']} support images, kernel {result['kernel']}"
    )
    if "init_test_accuracy" in result:
        print(f"  natural init test accuracy  {_percent(result['init_test_accuracy'])}")
    print(f"  test accuracy               {_percent(result['test_accuracy'])}")


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
        ("per step", compute.format_duration(plan["step_seconds"]), compute.format_duration(plan["step_seconds_workers"])),
        ("whole run", compute.format_duration(plan["run_seconds"]), compute.format_duration(plan["run_seconds_workers"])),
    ]
    for label, one, many in rows:
        print(f"  {label:<10} {one:>12} {many:>12}")
    if plan["zca_fit_seconds"] > 0:
        print(
            f"  whole run includes the ZCA fit: "
            f"{compute.format_duration(plan['zca_fit_seconds'])} (once; --no-zca skips it)"
        )
    print(
        f"  block overhead {1000 * plan['overhead_seconds_per_block']:.2f} ms; peak memory per "
        f"worker {plan['peak_bytes_per_worker'] / 2**20:,.0f} MiB of "
        f"{plan['memory_limit_bytes'] / 2**30:.0f} GiB"
    )
    for warning in plan["warnings"]:
        print(f"warning: {warning}")


def _config(config_class: type, args: argparse.Namespace) -> Any:
    """The config the command line asks for: the options given, on top of ``--preset``."""
    options = config_options(args, config_class)
    preset = options.pop("preset", None)
    if preset is None:
        return config_class(**options)
    config = runs.preset_config(config_class, preset, **options)
    settings = runs.paper_settings(
        config.ALGORITHM, config.dataset, config.images_per_class, getattr(config, "augment", 0)
    )
    shown = ", ".join(f"{name} {getattr(config, name)}" for name in settings)
    given = ", ".join(config.preset_overrides) or "none"
    log(f"preset {preset}: {shown} (given explicitly instead: {given})")
    return config


def _run_config(config_class: type, args: argparse.Namespace) -> Any:
    """The config of a new run, or of the run in ``--out`` for ``--resume``."""
    if not args.resume:
        return _config(config_class, args)
    options = config_options(args, config_class)
    if "preset" in options:
        raise ValueError(
            "--preset applies to a new run; a resumed run keeps its own settings: leave out --preset"
        )
    return runs.resume_config(args.out, config_class, **options)


def _distill(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    if args.out is None and (args.resume or not args.plan):
        raise ValueError(
            "no run directory: pass --out RUN_DIR (a new folder, or the run to --resume), or "
            "--plan without --resume to price a new run without writing anything"
        )
    config = _run_config(runs.KipConfig, args)
    if args.plan:
        return runs.plan_run(config, executor=_executor_config(args), log=log)
    return runs.run_kip(
        config,
        args.out,
        resume=args.resume,
        progress=not args.quiet,
        executor=executor,
        log=log,
        budget_seconds=budget(args),
    )


def _label_solve(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    return runs.run_label_solve(
        _run_config(runs.LabelSolveConfig, args),
        args.out,
        resume=args.resume,
        progress=not args.quiet,
        executor=executor,
        log=log,
        budget_seconds=budget(args),
    )


def _evaluate(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    return runs.evaluate(
        args.path,
        dataset=args.dataset,
        data_dir=args.data_dir,
        kernel=args.kernel,
        zca=args.zca,
        zca_regularization=args.zca_regularization,
        progress=not args.quiet,
        executor=executor,
        log=log,
        budget_seconds=budget(args),
    )


def _export(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    out = runs.export(args.run_dir, args.out)
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    return {"export": str(out), "files": list(sizes), "bytes": sizes}


def _executor_config(args: argparse.Namespace) -> compute.ExecutorConfig:
    return compute.ExecutorConfig(**config_options(args, compute.ExecutorConfig))


Handler = Callable[[argparse.Namespace, "compute.Executor | None"], dict[str, Any]]

_COMMANDS: dict[str, Handler] = {
    "distill": _distill,
    "label-solve": _label_solve,
    "evaluate": _evaluate,
    "export": _export,
    "transfer": lambda args, executor: _transfer.run(args, log, budget(args)),
    **dict.fromkeys(
        _analysis.COMMANDS,
        lambda args, executor: _analysis.run(args, executor, log, budget(args)),
    ),
}


def _print_result(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result))
    elif args.command == "evaluate":
        _print_evaluation(result)
    elif args.command == "export":
        files = ", ".join(f"{name} ({_size(size)})" for name, size in result["bytes"].items())
        print(f"exported to {result['export']}: {files}; {_size(sum(result['bytes'].values()))} in all")
    elif args.command == "distill" and args.plan:
        _print_plan(result)
    elif args.command == "transfer":
        print(_transfer.format_result(result))
    elif args.command in _analysis.COMMANDS:
        print(_analysis.format_result(result))
    else:
        _print_summary(result, args.out)


def _size(size: int) -> str:
    """Bytes as a reader takes them in: ``812 B``, ``4.1 KB``, ``1.2 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _warning(message: Any, category: type, *rest: Any, **kw: Any) -> str:
    return f"kipd: warning: {message}\n"


def _continue_with(args: argparse.Namespace) -> str | None:
    """The command that continues the run in ``--out``, if there is one to continue."""
    if args.command not in ("distill", "label-solve") or args.out is None:  # --plan: no --out
        return None
    if (Path(args.out) / runs.CONFIG_FILE).is_file():
        return runs.command_line("kipd", args.command, "--out", args.out, "--resume")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kipd`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    warnings.formatwarning = _warning
    try:
        with _open_executor(args) as executor:
            result = _COMMANDS[args.command](args, executor)
    except (ValueError, OSError, ImportError, runs.DistillError, compute.ComputeError) as err:
        print(f"kipd {args.command}: error: {err}{_next_step(args, err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nkipd {args.command}: interrupted; {_interrupted(args)}", file=sys.stderr)
        return 130
    _print_result(args, result)
    return 0


def _open_executor(args: argparse.Namespace) -> Any:
    """The executor of a command that computes kernels (opened here, closed after it), or
    ``None`` for one that does not (its parser has no ``--executor``)."""
    if not hasattr(args, "executor") or (args.command == "distill" and args.plan):
        return contextlib.nullcontext(None)
    return _executor_config(args).make()

