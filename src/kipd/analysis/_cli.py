"""The ``kipd analyze``, ``kipd report`` and ``kipd baseline`` sub-commands.

``kipd.cli`` wires them in with a few lines::

    analysis_cli.add_parser(commands)                                  # in _build_parser
    **dict.fromkeys(analysis_cli.COMMANDS, analysis_cli.run)           # in _COMMANDS
    elif args.command in analysis_cli.COMMANDS: print(analysis_cli.format_result(result))

``run(args)`` returns the result dict (``kipd.cli`` prints it as JSON with ``--json``);
``format_result(result)`` is the text to print otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from kipd.analysis import _tables
from kipd.analysis._bands import BANDS, band_analysis
from kipd.analysis._baseline import BASELINE_DRAWS, natural_baseline
from kipd.analysis._dimension import dimensions_over_training
from kipd.analysis._figures import save_figures
from kipd.analysis._report import write_report
from kipd.analysis._results import bands_result, dimension_result, subsample_result
from kipd.analysis._run_kernels import run_kernels
from kipd.analysis._runs import load_run
from kipd.analysis._subsample import DRAWS, FRACTIONS, subsampling

COMMANDS = ("analyze", "report", "baseline")

_FORMATTER = argparse.RawDescriptionHelpFormatter

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


def _numbers(kind: Callable[[str], Any], what: str) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one of the {what}")
        return values

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_options(parser: argparse.ArgumentParser, test_set: bool) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory (the --out of kipd distill)"
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder searched first for the run's dataset"
    )
    if not test_set:
        return
    parser.add_argument(
        "--kernel", help="NTK architecture of the analysis (default: the run's first kernel)"
    )
    parser.add_argument(
        "--test-size",
        type=_positive_int,
        metavar="N",
        help="a fixed class-balanced test subset of N images (default: the whole test set)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the test subset and the draws (default: 0)"
    )


def _subsample_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fractions",
        type=_numbers(float, "fractions"),
        default=FRACTIONS,
        metavar="F,F,...",
        help=f"kept fractions of the support (default: {','.join(map(str, FRACTIONS))})",
    )
    parser.add_argument(
        "--draws",
        type=_positive_int,
        default=DRAWS,
        help=f"random subsets per fraction (default: {DRAWS}, the paper's)",
    )


def _bands_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bands",
        type=_positive_int,
        default=BANDS,
        help=f"contiguous bands of the spectrum (default: {BANDS}, i.e. 20%% each)",
    )


def add_parser(commands: Any) -> None:
    """Adds ``analyze`` (with its analyses), ``report`` and ``baseline`` to ``kipd``."""
    analyze = commands.add_parser(
        "analyze",
        help="analyze a run: figures, dimension, spectral bands, subsampling",
        description="One analysis of a run directory (paper §4, appendix C); prints its table.",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    analyses = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    figures = analyses.add_parser(
        "figures",
        help="PNG figures: image grid, labels, training curves",
        description="Write images.png (initial vs learned images per class, pixel space), "
        "labels.png (label heatmap) and curves.png (loss, train and test accuracy).",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    _run_options(figures, test_set=False)
    figures.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/figures)")
    dimension = analyses.add_parser(
        "dimension",
        help="intrinsic and linear dimension of images and NTK gradients per checkpoint",
        description="Two-NN intrinsic dimension and PCA linear dimension (90%% of variance) of the "
        "support images and of their infinite-width NTK gradients (eqs. 4-6), at step 0 and "
        "every kept checkpoint (Figs. 7, A3).",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    _run_options(dimension, test_set=False)
    dimension.add_argument(
        "--kernel", help="NTK architecture of the gradients (default: the run's first kernel)"
    )
    bands = analyses.add_parser(
        "bands",
        help="test accuracy per band of K_ss's spectrum, learned vs initial (Fig. 8)",
        description="Ridge-0 KRR restricted to contiguous bands of the eigenvalues of K_ss: the "
        "test accuracy each band adds, learned vs initial images (Fig. 8).",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    _run_options(bands, test_set=True)
    _bands_option(bands)
    subsample = analyses.add_parser(
        "subsample",
        help="KRR accuracy of random subsets, learned vs initial (Fig. A1)",
        description="KRR test accuracy of random subsets of the learned support and of the same "
        "indices of the natural initial support, and their relative drops (Fig. A1).",
        epilog=_ANALYZE_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    _run_options(subsample, test_set=True)
    _subsample_options(subsample)
    for parser in (figures, dimension, bands, subsample):
        _common(parser)

    report = commands.add_parser(
        "report",
        help="one self-contained HTML report of a run",
        description="Write one HTML page (figures embedded) with the run's summary, config, "
        "images, labels, training curves, and the dimension, band and subsampling analyses.",
        epilog=_REPORT_EXAMPLES,
        formatter_class=_FORMATTER,
    )
    _run_options(report, test_set=True)
    report.add_argument("--out", metavar="FILE", help="HTML file (default: RUN_DIR/report.html)")
    _bands_option(report)
    _subsample_options(report)
    _common(report)

    baseline = commands.add_parser(
        "baseline",
        help="KRR accuracy of random natural subsets (Table A1)",
        description="KRR test accuracy of random class-balanced natural subsets, mean and "
        "standard deviation over draws (Table A1). Nested subsets per draw; the test kernel is "
        "computed once for every drawn image.",
        epilog=_BASELINE_EXAMPLES,
        formatter_class=_FORMATTER,
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
        type=_numbers(int, "integers"),
        default=(1, 2, 4, 8),
        metavar="K,K,...",
        help="images per class of each row (default: 1,2,4,8)",
    )
    baseline.add_argument(
        "--draws",
        type=_positive_int,
        default=BASELINE_DRAWS,
        help=f"random subsets per row (default: {BASELINE_DRAWS}, the paper's)",
    )
    baseline.add_argument(
        "--test-size",
        type=_positive_int,
        metavar="N",
        help="a fixed class-balanced test subset of N images (default: the whole test set)",
    )
    baseline.add_argument(
        "--pool-per-class",
        type=_positive_int,
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
    _common(baseline)


def _analyze(args: argparse.Namespace) -> dict[str, Any]:
    progress = not (args.quiet or args.json)
    if args.analysis == "figures":
        paths = save_figures(args.run_dir, args.out, data_dir=args.data_dir)
        return {"analysis": "figures", "run": args.run_dir, "files": [str(p) for p in paths]}
    run = load_run(args.run_dir)
    if args.analysis == "dimension":
        kernel = args.kernel or run.config.eval_kernel
        dims = dimensions_over_training(run, kernel=kernel, progress=progress)
        return dimension_result(run, dims, kernel)
    kernels = run_kernels(
        run,
        kernel=args.kernel,
        test_size=args.test_size,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=progress,
    )
    if args.analysis == "bands":
        return bands_result(run, kernels, band_analysis(kernels, args.bands))
    full, rows = subsampling(kernels, args.fractions, args.draws, args.seed, progress)
    return subsample_result(run, kernels, full, rows, args.draws)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``kipd analyze``, ``kipd report`` or ``kipd baseline``; returns its result."""
    progress = not (args.quiet or args.json)
    if args.command == "analyze":
        return _analyze(args)
    if args.command == "report":
        return write_report(
            args.run_dir,
            args.out,
            kernel=args.kernel,
            test_size=args.test_size,
            bands=args.bands,
            fractions=args.fractions,
            draws=args.draws,
            seed=args.seed,
            data_dir=args.data_dir,
            progress=progress,
        )
    result = natural_baseline(
        args.dataset,
        args.kernel,
        args.per_class,
        draws=args.draws,
        test_size=args.test_size,
        pool_per_class=args.pool_per_class,
        seed=args.seed,
        zca=args.zca,
        data_dir=args.data_dir,
        progress=progress,
    )
    return {"analysis": "baseline", **result.to_dict()}


_TABLES = {
    "dimension": _tables.dimension_table,
    "bands": _tables.band_table,
    "subsample": _tables.subsample_table,
    "baseline": _tables.baseline_table,
}


def format_result(result: dict[str, Any]) -> str:
    """The text to print for a result of :func:`run`: its table, or the files written."""
    analysis = result["analysis"]
    if analysis == "figures":
        return "figures written:\n" + "\n".join(f"  {path}" for path in result["files"])
    if analysis == "report":
        tables = [
            _tables.to_text(table(result[name]))
            for name, table in (
                ("dimension", _tables.dimension_table),
                ("bands", _tables.band_table),
                ("subsample", _tables.subsample_table),
            )
        ]
        return "\n\n".join([*tables, f"report written: {result['report']}"])
    return _tables.to_text(_TABLES[analysis](result))
