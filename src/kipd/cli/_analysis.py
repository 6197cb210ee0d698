"""The ``kipd analyze``, ``kipd report`` and ``kipd baseline`` sub-commands.

``analyze`` has one sub-command per analysis of :data:`kipd.analysis.ANALYSES` (plus
``figures``), with the options of :class:`kipd.analysis.ContextOptions` and the dataclass
each entry names; ``report`` runs all of them; ``baseline`` takes
:class:`kipd.analysis.BaselineOptions`. Adding an analysis to the registry adds it here
with no change to this file.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from kipd import analysis, compute, runs
from kipd.cli._options import add_config_options, options_from
from kipd.cli._shared import add_executor_options, add_output_options, budget, log

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


def _add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory (the --out of kipd distill)"
    )


def add_parsers(commands: Any) -> None:
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
    _add_run_dir(figures)
    # the figures draw the run's own sets: no kernel, draws or test images to choose
    add_config_options(figures, analysis.ContextOptions, skip=("kernel", "seed", "test_size"))
    figures.add_argument(
        "--out", metavar="DIR", help=f"output folder (default: RUN_DIR/{runs.FIGURES_DIR})"
    )
    add_output_options(figures, False)
    for entry in analysis.ANALYSES.values():
        parser = analyses.add_parser(
            entry.name,
            help=entry.help,
            description=entry.description.replace("%", "%%"),
            epilog=_ANALYZE_EXAMPLES,
            formatter_class=formatter,
        )
        _add_run_dir(parser)
        skip = () if entry.uses_test_set else ("test_size",)
        add_config_options(parser, analysis.ContextOptions, skip=skip)
        add_config_options(parser, entry.options)
        add_executor_options(parser)
        add_output_options(parser, False)

    report = commands.add_parser(
        "report",
        help="one self-contained HTML report of a run",
        description="Write one HTML page (figures embedded) with the run's summary, config, "
        "images, labels, training curves, and every analysis: "
        + ", ".join(analysis.ANALYSES)
        + ".",
        epilog=_REPORT_EXAMPLES,
        formatter_class=formatter,
    )
    _add_run_dir(report)
    add_config_options(report, analysis.ContextOptions)
    report.add_argument(
        "--out", metavar="FILE", help=f"HTML file (default: RUN_DIR/{runs.REPORT_FILE})"
    )
    for entry in analysis.ANALYSES.values():
        add_config_options(report, entry.options)
    add_executor_options(report)
    add_output_options(report)

    baseline = commands.add_parser(
        "baseline",
        help="KRR accuracy of random natural subsets (Table A1)",
        description="KRR test accuracy of random class-balanced natural subsets, mean and "
        "standard deviation over draws (Table A1). Nested subsets per draw; the test kernel is "
        "computed once for every drawn image.",
        epilog=_BASELINE_EXAMPLES,
        formatter_class=formatter,
    )
    add_config_options(baseline, analysis.BaselineOptions)
    add_executor_options(baseline)
    add_output_options(baseline)


def option_classes(command: str) -> tuple[type, ...]:
    """The dataclasses whose fields are the options of ``command`` (for ``analyze``, of
    any of its analyses)."""
    if command == "baseline":
        return (analysis.BaselineOptions, compute.ExecutorConfig)
    entries = tuple(entry.options for entry in analysis.ANALYSES.values())
    return (analysis.ContextOptions, *entries, compute.ExecutorConfig)


def _context(args: argparse.Namespace, executor: compute.Executor | None) -> analysis.RunContext:
    return analysis.RunContext(
        runs.load_run(args.run_dir),
        **dataclasses.asdict(options_from(args, analysis.ContextOptions)),
        executor=executor,
        progress=not (args.quiet or args.json),
    )


def _analysis_options(args: argparse.Namespace, entry: analysis.Analysis) -> dict[str, Any]:
    return dataclasses.asdict(options_from(args, entry.options))


def run(args: argparse.Namespace, executor: compute.Executor | None) -> dict[str, Any]:
    """Runs ``kipd analyze``, ``kipd report`` or ``kipd baseline``; returns its result."""
    progress = not (args.quiet or args.json)
    if args.command == "analyze" and args.analysis == "figures":
        paths = analysis.save_figures(args.run_dir, args.out, data_dir=args.data_dir)
        return {"analysis": "figures", "run": args.run_dir, "files": [str(p) for p in paths]}
    if args.command == "analyze":
        entry = analysis.ANALYSES[args.analysis]
        return entry.run(_context(args, executor), **_analysis_options(args, entry)).result
    if args.command == "report":
        options: dict[str, Any] = {}
        for entry in analysis.ANALYSES.values():
            options.update(_analysis_options(args, entry))
        return analysis.write_report(
            args.run_dir,
            args.out,
            **dataclasses.asdict(options_from(args, analysis.ContextOptions)),
            executor=executor,
            progress=progress,
            log=log,
            budget_seconds=budget(args),
            **options,
        )
    result = analysis.natural_baseline(
        **dataclasses.asdict(options_from(args, analysis.BaselineOptions)),
        executor=executor,
        progress=progress,
        log=log,
        budget_seconds=budget(args),
    )
    return {"analysis": "baseline", **result.to_dict()}


def format_result(args: argparse.Namespace, result: dict[str, Any]) -> str:
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
