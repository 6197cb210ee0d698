"""KIP runs side by side by cost: test accuracy against kernel entries spent.

    python bench/kip_curve.py runs/a runs/b --out bench/results/kip_curve.md \
        --png docs/kip_curve.png

Reads each run directory (finished or still training): its test readings (``metrics.jsonl``,
the fixed evaluation subset) and its config, whose ``step_kernel_entries`` gives the cost of
a step (forward and VJP of K_ss and K_ts). Prints a markdown table per run (step, kernel
entries, wall time so far, reading) and, with ``--png``, draws all runs on one axis of kernel
entries, the unit in which runs of different target batch sizes compare.
"""

from __future__ import annotations

import argparse

import _report

from kipd import runs


def _curve(run: runs.Run) -> list[tuple[int, int, float, float]]:
    """``(step, kernel entries, wall seconds, reading)`` of each test reading."""
    per_step = run.config.step_kernel_entries(run.labels.shape[1])
    rows, seconds = [], 0.0
    for record in run.metrics:
        seconds += record.get("seconds", 0.0)
        if "test_accuracy" in record:
            step = record["step"]
            rows.append((step, step * per_step, seconds, record["test_accuracy"]))
    return rows


def _label(run: runs.Run) -> str:
    c = run.config
    schedule = "" if c.lr_schedule == "constant" else f" ({c.lr_schedule})"
    return f"{run.path.name}: B = {c.target_batch_size}, lr {c.lr}{schedule}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="KIP run directories")
    parser.add_argument("--out", help="markdown file to write (default: print only)")
    parser.add_argument("--png", help="figure of all runs against kernel entries")
    args = parser.parse_args()
    runs = [runs.load_run(path) for path in args.runs]
    lines = []
    for run in runs:
        lines += [
            f"### {_label(run)}",
            "",
            "| step | kernel entries | training time | test reading |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {step} | {entries:,} | {seconds / 60:.1f} min | {100 * reading:.1f}% |"
            for step, entries, seconds, reading in _curve(run)
        ]
        lines.append("")
    text = "\n".join(lines)
    if args.out:
        _report.write_table(args.out, text)
    else:
        print(text)
    if args.png:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
        ax = figure.subplots()
        for run in runs:
            curve = _curve(run)
            ax.plot([c[1] for c in curve], [100 * c[3] for c in curve], "o-", label=_label(run))
        ax.set_xlabel("kernel entries spent (forward + VJP)")
        ax.set_ylabel("test accuracy (1000-image subset), %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figure.savefig(args.png)
        print(f"written: {args.png}")


if __name__ == "__main__":
    main()
