"""Protocol study (issue: the paper's rows): at an equal kernel-entry budget, does KIP with a
small target batch and many steps reach the accuracy of the paper's 5000 targets per step?

    nice -n 19 python bench/protocol_study.py --kernel fc1 --budget 30000000      # ~15 min here
    python bench/protocol_study.py --kernel convnet --budget 2000000 --test-size 2000  # hours

Each target batch size ``B`` gets its own KIP run with the paper's settings (``--preset
paper``: label learning, Adam lr, lambda0) and ``budget // step_kernel_entries(B)`` steps,
so every run spends the same kernel entries (forward and VJP of K_ss and K_ts). Test
accuracy is read on the run's fixed 1000-image subset at equally spaced budgets, and the
final support (and Table 1's 5 lowest-loss checkpoints) on ``--test-size`` test images.
Writes a markdown table to ``bench/results/protocol_study_<dataset>_<kernel>.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _report

from kipd import data, runs


def _study_run(args: argparse.Namespace, num_classes: int, target_batch: int, folder: Path) -> dict:
    step_entries = runs.KipConfig(target_batch_size=target_batch).step_kernel_entries(num_classes)
    steps = max(1, args.budget // step_entries)
    every = max(1, steps // args.readings)
    config = runs.preset_config(
        runs.KipConfig,
        "paper",
        dataset=args.dataset,
        kernels=(args.kernel,),
        target_batch_size=target_batch,
        steps=steps,
        eval_every=every,
        checkpoint_every=every,
        test_size=args.test_size,
        seed=args.seed,
    )
    started = time.perf_counter()
    summary = runs.run_kip(config, folder / f"batch{target_batch}", progress=False)
    seconds = time.perf_counter() - started
    readings = [
        (r["step"] * step_entries, r["test_accuracy"])
        for r in map(json.loads, (folder / f"batch{target_batch}" / "metrics.jsonl").open())
        if "test_accuracy" in r
    ]
    return {
        "target_batch": target_batch,
        "steps": steps,
        "step_entries": step_entries,
        "readings": readings,
        "summary": summary,
        "seconds": seconds,
    }


def _markdown(args: argparse.Namespace, results: list[dict], command: str) -> str:
    machine = _report.machine()
    lines = [
        f"# Protocol study, {args.dataset}, {args.kernel} kernel, 1 image per class",
        "",
        f"- command: `{command}`",
        f"- budget: {args.budget:,} kernel entries per run (forward + VJP of K_ss and K_ts), "
        f"the paper's settings otherwise (--preset paper), seed {args.seed}; {machine}",
        "- readings: test accuracy of the support at that budget, on the run's fixed "
        "1000-image test subset",
        "",
        "| kernel entries spent | "
        + " | ".join(f"B = {r['target_batch']} ({r['steps']} steps)" for r in results)
        + " |",
        "|---|" + "---|" * len(results),
    ]
    # Readings at the budgets every run was read at (runs are read at equal fractions).
    for index in range(min(len(r["readings"]) for r in results)):
        entries = results[0]["readings"][index][0]
        cells = [f"{100 * r['readings'][index][1]:.2f}%" for r in results]
        lines.append(f"| {entries:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Final support on {results[0]['summary']['test_size']} test images:",
        "",
        "| target batch | steps | last step | 5 lowest-loss checkpoints | wall time |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]
        lines.append(
            f"| {r['target_batch']} | {r['steps']} | {100 * s['test_accuracy']:.2f}% | "
            f"{100 * s['best_checkpoints_test_accuracy']:.2f}% ± "
            f"{100 * s['best_checkpoints_test_accuracy_std']:.2f} | {r['seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--kernel", default="convnet")
    parser.add_argument("--batches", default="500,5000", help="target batch sizes, comma list")
    parser.add_argument("--budget", type=int, default=30_000_000, help="kernel entries per run")
    parser.add_argument("--readings", type=int, default=10, help="test readings per run")
    parser.add_argument("--test-size", type=int, default=None, help="default: whole test set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="markdown file (default: bench/results/protocol_study_...)")
    args = parser.parse_args()
    out = Path(args.out or f"bench/results/protocol_study_{args.dataset}_{args.kernel}.md")
    command = _report.command_line("protocol_study.py", args)
    num_classes = data.load(args.dataset).num_classes
    with tempfile.TemporaryDirectory() as folder:
        results = [
            _study_run(args, num_classes, int(batch), Path(folder))
            for batch in args.batches.split(",")
        ]
    _report.write_table(out, _markdown(args, results, command))


if __name__ == "__main__":
    main()
