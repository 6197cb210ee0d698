"""The ``kipd analyze``, ``kipd report`` and ``kipd baseline`` sub-commands.

``analyze`` has one sub-command per analysis of :data:`kipd.analysis.ANALYSES` (plus
``figures``), with the options each declares; ``report`` runs all of them. Adding an
analysis to the registry adds it here with no change to this file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from kipd import analysis, compute, runs
from kipd.cli._options import finite, numbers, positive_int

COMMANDS = ("analyze", "report", "baseline")

_ANALYZE_EXAMPLES = """\
examples:
  kipd analyze figures runs/quickstart            # images.png, labels.png, curves.png
  kipd analyze dimension runs/quickstart          # Two-NN and PCA dimension per checkpoint
  kipd analyze bands runs/quickstart --test-size 2000
  kipd analyze subsample runs/quickstart --fractions 0.2,0.5,0.8 --draws 100 --json
"""

_REPORT_EXAMPLES = """\
examples:
  kipd report runs/quickstart                     # writes runs/quickstart/report.html
  kipd report runs/convnet --test-size 2000 --out convnet.html
"""

_BASELINE_EXAMPLES = """\
examples:
  # Table A1's Fashion-MNIST rows (ConvNet kernel; about 30 min on 2 CPU cores):
  kipd baseline --dataset fashion_mnist --kernel convnet --per-class 1,2,4,8 --draws 20 \\
      --test-size 2000 --pool-per-class 40
  # quick, with the FC1 kernel on the whole test set:
  kipd baseline --dataset fashion_mnist --kernel fc1 --per-class 1,10,100 --draws 5
"""



def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory (the --out of kipd distill)"
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder searched first for the run's dataset"
    )


def _context_options(parser: argparse.ArgumentParser, uses_test_set: bool) -> None:
    parser.add_argument(
        "--kernel", help="NTK architecture of the analysis (default: the run's first kernel)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random draws (default: 0)"
    )
    if uses_test_set:
        parser.add_argument(
            "--test-size",
            type=positive_int,
            metavar="N",
            help="a fixed random test subset of N images, drawn with the run's seed (default: "
            "the run's own test images, those of its summary)",
        )


def _analysis_options(parser: argparse.ArgumentParser, options: Any) -> None:
    for option in options:
        default = option.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            dest=option.name,
            type=finite(_argparse_type(option.parse, option.name)),
            default=default,
            metavar=option.metavar,
            help=f"{option.help} (default: {shown})".replace("%", "%%"),
        )


def _argparse_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse_argument(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}: {err}") from None

    return parse_argument


def add_parsers(
    commands: Any,
    add_executor: Callable[[argparse.ArgumentParser], None],
    add_output: Callable[..., None],
) -> None:
    """Adds ``analyze`` (one sub-command per registered analysis, and ``figures``),
    ``report`` and ``baseline`` to ``kipd``."""
    formatter = argparse.RawDescriptionHelpFormatter
    analyze = commands.add_parser(
        "analyze",
        help="analyze a run: " + ", ".join(["figures", *analysis.ANALYSES]),
        description="One analysis of a run directory (paper §4, appendix C); prints its table.",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=formatter,
    )
    analyses = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    figures = analyses.add_parser(
        "figures",
        help="PNG figures: image grid, labels, training curves",
        description="Write images.png (initial vs learned images per class, pixel space), "
        "labels.png (label heatmap) and curves.png (loss, train and test accuracy).",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=formatter,
    )
    _run_options(figures)
    figures.add_argument("--out", metavar="DIR", help=f"output folder (default: RUN_DIR/{runs.FIGURES_DIR})")
    add_output(figures, False)
    for entry in analysis.ANALYSES.values():
        parser = analyses.add_parser(
            entry.name,
            help=entry.help,
            description=entry.description.replace("%", "%%"),
            epilog=_ANALYZE_EXAMPLES,
            formatter_class=formatter,
        )
        _run_options(parser)
        _context_options(parser, entry.uses_test_set)
        _analysis_options(parser, entry.options)
        add_executor(parser)
        add_output(parser, False)

    report = commands.add_parser(
        "report",
        help="one self-contained HTML report of a run",
        description="Write one HTML page (figures embedded) with the run's summary, config, "
        "images, labels, training curves, and every analysis: "
        + ", ".join(analysis.ANALYSES) + ".",
        epilog=_REPORT_EXAMPLES,
        formatter_class=formatter,
    )
    _run_options(report)
    _context_options(report, uses_test_set=True)
    report.add_argument("--out", metavar="FILE", help=f"HTML file (default: RUN_DIR/{runs.REPORT_FILE})")
    _analysis_options(
        report, [option for entry in analysis.ANALYSES.values() for option in entry.options]
    )
    add_executor(report)
    add_output(report)

    baseline = commands.add_parser(
        "baseline",
        help="KRR accuracy of random natural subsets (Table A1)",
        description="KRR test accuracy of random class-balanced natural subsets, mean and "
        "standard deviation over draws (Table A1). Nested subsets per draw; the test kernel is "
        "computed once for every drawn image.",
        epilog=_BASELINE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    baseline.add_argument(
        "--dataset",
        default="fashion_mnist",
        metavar="NAME_OR_PATH",
        help="dataset name or .npz / image-folder path (default: fashion_mnist)",
    )
    baseline.add_argument(
        "--data-dir", metavar="DIR", help="folder searched first for the dataset's files"
    )
    baseline.add_argument("--kernel", default="convnet", help="NTK architecture (default: convnet)")
    baseline.add_argument(
        "--per-class",
        type=numbers(int, "integers"),
        default=(1, 2, 4, 8),
        metavar="K,K,...",
        help="images per class of each row (default: 1,2,4,8)",
    )
    baseline.add_argument(
        "--draws",
        type=positive_int,
        default=analysis.BASELINE_DRAWS,
        help=f"random subsets per row (default: {analysis.BASELINE_DRAWS}, the paper's)",
    )
    baseline.add_argument(
        "--test-size",
        type=positive_int,
        metavar="N",
        help="a fixed random test subset of N images (default: the whole test set)",
    )
    baseline.add_argument(
        "--pool-per-class",
        type=positive_int,
        metavar="N",
        help="draw from a fixed random pool of N train images per class (default: the whole "
        "train set)",
    )
    baseline.add_argument(
        "--zca",
        action=argparse.BooleanOptionalAction,
        help="regularized ZCA preprocessing (default: the paper's choice, RGB datasets only)",
    )
    baseline.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_executor(baseline)
    add_output(baseline)



def _context(args: argparse.Namespace, executor: compute.Executor | None) -> analysis.RunContext:
    return analysis.RunContext(
        runs.load_run(args.run_dir),
        kernel=args.kernel,
        test_size=getattr(args, "test_size", None),
        seed=args.seed,
        data_dir=args.data_dir,
        executor=executor,
        progress=not (args.quiet or args.json),
    )


def _option_values(args: argparse.Namespace, entry: analysis.Analysis) -> dict[str, Any]:
    return {option.name: getattr(args, option.name) for option in entry.options}


def run(
    args: argparse.Namespace,
    executor: compute.Executor | None,
    log: Callable[[str], None],
    budget_seconds: float | None,
) -> dict[str, Any]:
    """Runs ``kipd analyze``, ``kipd report`` or ``kipd baseline``; returns its result."""
    progress = not (args.quiet or args.json)
    if args.command == "analyze" and args.analysis == "figures":
        paths = analysis.save_figures(args.run_dir, args.out, data_dir=args.data_dir)
        return {"analysis": "figures", "run": args.run_dir, "files": [str(p) for p in paths]}
    if args.command == "analyze":
        entry = analysis.ANALYSES[args.analysis]
        return entry.run(_context(args, executor), **_option_values(args, entry)).result
    if args.command == "report":
        options = {}
        for entry in analysis.ANALYSES.values():
            options.update(_option_values(args, entry))
        return analysis.write_report(
            args.run_dir,
            args.out,
            kernel=args.kernel,
            test_size=args.test_size,
            seed=args.seed,
            data_dir=args.data_dir,
            executor=executor,
            progress=progress,
            log=log,
            budget_seconds=budget_seconds,
            **options,
        )
    result = analysis.natural_baseline(
        args.dataset,
        args.kernel,
        args.per_class,
        draws=args.draws,
        test_size=args.test_size,
        pool_per_class=args.pool_per_class,
        seed=args.seed,
        zca=args.zca,
        data_dir=args.data_dir,
        executor=executor,
        progress=progress,
        log=log,
        budget_seconds=budget_seconds,
    )
    return {"analysis": "baseline", **result.to_dict()}


def format_result(result: dict[str, Any]) -> str:
    """The text to print for a result of :func:`run`: its table, or the files written."""
    name = result["analysis"]
    if name == "figures":
        return "figures written:\n" + "\n".join(f"  {path}" for path in result["files"])
    if name == "baseline":
        return analysis.to_text(analysis.baseline_table(result))
    if name == "report":
        tables = [
            analysis.to_text(entry.table(result[entry.name]))
            for entry in analysis.ANALYSES.values()
        ]
        return "\n\n".join([*tables, f"report written: {result['report']}"])
    return analysis.to_text(analysis.ANALYSES[name].table(result))
