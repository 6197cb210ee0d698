"""The commands of a run: ``distill`` (KIP), ``label-solve``, ``evaluate`` and ``export``.

Their options are the fields of :class:`kipd.runs.KipConfig`,
:class:`~kipd.runs.LabelSolveConfig` and :class:`~kipd.runs.EvaluateOptions` (and where
blocks run); besides them a run command has only ``--out``, ``--resume`` and ``--plan``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from kipd import compute, runs
from kipd.cli import _run_printers
from kipd.cli._options import add_config_options, config_options, options_from
from kipd.cli._shared import (
    add_executor_options,
    add_output_options,
    budget,
    executor_config,
    log,
)

COMMANDS = ("distill", "label-solve", "evaluate", "export")

QUICKSTART = "kipd distill --dataset fashion_mnist --kernel fc1 --steps 300 --out runs/quickstart"

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
  kipd distill --kernel convnet,convvec3,convvec8 --images-per-class 10 --augment 0.5 \\
    --out runs/sampling
"""

_LABEL_SOLVE_EXAMPLES = """\
examples:
  kipd label-solve --dataset fashion_mnist --kernel convvec3 --out runs/ls
  kipd label-solve --dataset cifar10 --kernel fc3 --images-per-class 10 --target-size 20000 \\
    --out runs/ls-cifar
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
  kipd evaluate runs/f10 --get nngp             # a run on features, by the NNGP it estimates
"""

_FORMATTER = argparse.RawDescriptionHelpFormatter


def add_parsers(commands: Any) -> None:
    """Adds ``distill``, ``label-solve``, ``evaluate`` and ``export`` to ``kipd``."""
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
    add_config_options(ev, runs.EvaluateOptions)
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


def option_classes(command: str) -> tuple[type, ...]:
    """The dataclasses whose fields are the options of ``command``."""
    return {
        "distill": (runs.KipConfig, compute.ExecutorConfig),
        "label-solve": (runs.LabelSolveConfig, compute.ExecutorConfig),
        "evaluate": (runs.EvaluateOptions, compute.ExecutorConfig),
        "export": (),
    }[command]


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
            "--preset applies to a new run; a resumed run keeps its own settings: leave out "
            "--preset"
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
        return runs.plan_run(config, executor=executor_config(args), log=log)
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
        **dataclasses.asdict(options_from(args, runs.EvaluateOptions)),
        progress=not args.quiet,
        executor=executor,
        log=log,
        budget_seconds=budget(args),
    )


def _export(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    out = runs.export(args.run_dir, args.out)
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    return {"export": str(out), "files": list(sizes), "bytes": sizes}


_HANDLERS = {
    "distill": _distill,
    "label-solve": _label_solve,
    "evaluate": _evaluate,
    "export": _export,
}


def run(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    """Runs the run command ``args.command`` asks for; returns its result."""
    return _HANDLERS[args.command](args, executor)


def format_result(args: argparse.Namespace, result: dict[str, Any]) -> str:
    """The text of a result of :func:`run`."""
    if args.command == "evaluate":
        return _run_printers.format_evaluation(result)
    if args.command == "export":
        return _run_printers.format_export(result)
    if args.command == "distill" and args.plan:
        return _run_printers.format_plan(result)
    return _run_printers.format_summary(result, args.out)
