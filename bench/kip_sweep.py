"""Several ``kipd distill`` runs at once on one machine, cut off at a deadline, in one table.

    python bench/kip_sweep.py --out /tmp/sweep --deadline-s 480 \\
        --common "--preset paper --dataset fashion_mnist --lr-schedule cosine" \\
        --run "b100-lr0.06: --target-batch-size 100 --lr 0.06 --steps 3300" \\
        --run "b200-lr0.06: --target-batch-size 200 --lr 0.06 --steps 1700"

Made for a GPU lent for a few minutes: a KIP setting whose run costs two hours on the 2-core
CPU takes minutes there, so a handful of settings can be compared before one is spent on the
CPU. Each run is ``python -m kipd.cli distill COMMON FLAGS --out OUT/NAME`` in its own process
(at most ``--parallel`` at a time, JAX told not to preallocate the device's memory so that
they share it), its output in ``OUT/NAME.log``. At the deadline the runs still going are
stopped with Ctrl-C (SIGINT); their run directories keep the test readings so far. The
table (``OUT/sweep.md``,
every number in ``OUT/sweep.json``) gives per run: its steps done, seconds per step (median),
the readings on the run's fixed test subset at a quarter, half, three quarters and the end of
the steps done, the best reading, and for a finished run the whole test set's accuracy at the
last step and over the 5 lowest-loss checkpoints (Table 1's protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _report

from kipd import runs


def _parse_run(text: str) -> tuple[str, list[str]]:
    name, sep, flags = text.partition(":")
    if not sep or not name.strip() or "/" in name:
        raise argparse.ArgumentTypeError(
            f"--run {text!r}: write it as 'NAME: --flag value ...' (NAME without '/')"
        )
    return name.strip(), shlex.split(flags)


def _launch(name: str, command: list[str], out: Path) -> subprocess.Popen:
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    print(f"[{time.strftime('%H:%M:%S')}] start {name}: {shlex.join(command)}", flush=True)
    with open(out / f"{name}.log", "w") as log:  # the child keeps its own handle
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user would (kipd keeps the run directory consistent), then a kill."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _collect(name: str, flags: list[str], status: str, run_dir: Path) -> dict[str, Any]:
    """What the run directory holds: readings, step times, and the summary if it finished."""
    row: dict[str, Any] = {"name": name, "flags": shlex.join(flags), "status": status}
    if not (run_dir / "config.json").is_file():
        return row  # failed before it wrote anything
    run = runs.load_run(run_dir)
    step_seconds = [r["seconds"] for r in run.metrics if "seconds" in r]
    row["steps_done"] = max((r["step"] for r in run.metrics), default=0)
    if step_seconds:
        row["seconds_per_step"] = statistics.median(step_seconds)
    row["readings"] = {r["step"]: r["test_accuracy"] for r in run.metrics if "test_accuracy" in r}
    if run.summary is not None:
        row["summary"] = run.summary
    return row


def _reading_at(readings: dict[int, float], fraction: float) -> str:
    if not readings:
        return ""
    last = max(readings)
    step = min(readings, key=lambda s: abs(s - fraction * last))
    return f"{100 * readings[step]:.1f}% ({step})"


def _table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| run | flags | status | steps | s/step | 1/4 | 1/2 | 3/4 | end | best reading "
        "| whole test set, last | 5 lowest-loss checkpoints |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        readings = {int(k): v for k, v in row.get("readings", {}).items()}
        best = max(readings.items(), key=lambda kv: kv[1]) if readings else None
        summary = row.get("summary", {})
        last = f"{100 * summary['test_accuracy']:.2f}%" if summary else ""
        best5 = (
            f"{100 * summary['best_checkpoints_test_accuracy']:.2f}% +- "
            f"{100 * summary['best_checkpoints_test_accuracy_std']:.2f}"
            if "best_checkpoints_test_accuracy" in summary
            else ""
        )
        seconds = row.get("seconds_per_step")
        lines.append(
            f"| {row['name']} | `{row['flags']}` | {row['status']} | {row.get('steps_done', 0)} "
            f"| {'' if seconds is None else f'{seconds:.3f}'} "
            + " ".join(f"| {_reading_at(readings, f)}" for f in (0.25, 0.5, 0.75, 1.0))
            + f" | {'' if best is None else f'{100 * best[1]:.1f}% ({best[0]})'} | {last} | "
            f"{best5} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder of the run directories and the table")
    parser.add_argument(
        "--run",
        action="append",
        type=_parse_run,
        required=True,
        metavar="'NAME: FLAGS'",
        help="one run: a name and its kipd distill flags (repeat the option)",
    )
    parser.add_argument(
        "--common", default="", metavar="FLAGS", help="kipd distill flags of every run"
    )
    parser.add_argument(
        "--deadline-s", type=float, default=480.0, help="stop the runs still going after this"
    )
    parser.add_argument("--parallel", type=int, default=8, help="runs at a time (default 8)")
    args = parser.parse_args()
    names = [name for name, _ in args.run]
    if len(set(names)) != len(names):
        parser.error(f"--run names must differ: {names}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = shlex.split(args.common)
    deadline = time.monotonic() + args.deadline_s
    waiting = list(args.run)
    running: dict[str, subprocess.Popen] = {}
    statuses: dict[str, str] = {}
    while waiting or running:
        while waiting and len(running) < args.parallel and time.monotonic() < deadline:
            name, flags = waiting.pop(0)
            command = [
                sys.executable,
                "-m",
                "kipd.cli",
                "distill",
                *common,
                *flags,
                "--out",
                str(out / name),
            ]
            running[name] = _launch(name, command, out)
        for name, process in list(running.items()):
            if process.poll() is not None:
                statuses[name] = (
                    "done" if process.returncode == 0 else f"failed ({process.returncode})"
                )
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {statuses[name]}", flush=True)
                del running[name]
        if time.monotonic() >= deadline:
            for name, process in running.items():
                finished = process.poll() is not None
                _stop(process)
                statuses[name] = "done" if finished else "stopped at the deadline"
            running.clear()
            statuses.update({name: "not started" for name, _ in waiting})
            waiting.clear()
        time.sleep(1.0)
    rows = [_collect(name, flags, statuses[name], out / name) for name, flags in args.run]
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    header = (
        f"Command: `{shlex.join([sys.argv[0].replace(os.sep, '/'), *sys.argv[1:]])}`\n\n"
        f"Machine: {_report.machine()}. Readings: the run's fixed test subset, (step)."
    )
    _report.write_table(out / "sweep.md", _table(rows, header))


if __name__ == "__main__":
    main()
