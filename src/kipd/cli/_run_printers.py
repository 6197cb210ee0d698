"""The text of ``distill``, ``label-solve``, ``evaluate`` and ``export`` (``--json`` prints
their result dict instead): a run's summary table, its plan, an evaluation, the files of
an export."""

from __future__ import annotations

from typing import Any

from kipd import compute


def _percent(value: float) -> str:
    return f"{100 * value:6.2f}%"


def _accuracy_rows(summary: dict[str, Any], prefix: str, kernel: str) -> list[tuple[str, ...]]:
    """Natural init, the distilled set and the best checkpoints, with the kernel whose
    accuracies the ``prefix`` entries of ``summary`` are."""
    method = "KIP" if summary["algorithm"] == "kip" else "Label Solve"
    done = f"{method} ({summary['steps']} steps)" if "steps" in summary else method
    init, final = summary[f"{prefix}init_test_accuracy"], summary[f"{prefix}test_accuracy"]
    start = f"initial set ({summary['init_from']})" if "init_from" in summary else "natural init"
    if init is None:
        init_cells, change = ("   -   ", "not measured (--no-init-accuracy)"), ""
    else:
        init_cells, change = (_percent(init), ""), f"({100 * (final - init):+.2f} points)"
    rows: list[tuple[str, ...]] = [
        (f"{start}{kernel}", *init_cells),
        (f"{done}{kernel}", _percent(final), change),
    ]
    best = f"best_checkpoints_{prefix}test_accuracy"
    if best in summary:
        steps = ",".join(map(str, summary["best_checkpoints"]))
        rows.append(
            (
                f"{len(summary['best_checkpoints'])} lowest-loss checkpoints{kernel}",
                _percent(summary[best]),
                f"+- {100 * summary[f'{best}_std']:.2f} (steps {steps}; Table 1's protocol)",
            )
        )
    return rows


def format_summary(summary: dict[str, Any], out: str) -> str:
    """A finished run: natural init against the distilled set (and the paper's row where
    the run is in its setting), with the run directory. A run on features shows the exact
    kernel's rows (the referee), then the feature kernel's."""
    rows = _accuracy_rows(summary, "", "")
    # Summaries of kipd < 0.8 have no "feature_kernel": their features estimated the NNGP.
    estimated = summary.get("feature_kernel", "nngp").upper()
    if "features" in summary:
        named = "" if estimated == "NNGP" else f"{estimated} "
        rows = _accuracy_rows(summary, "", ", exact") + _accuracy_rows(
            summary, "feature_", f", {named}features {summary['features']}"
        )
    if "paper_test_accuracy" in summary:
        std = summary["paper_test_accuracy_std"]
        rows.append(
            (
                "paper, Table 1",
                _percent(summary["paper_test_accuracy"]),
                ("" if std is None else f"+- {100 * std:.1f} ")
                + f"(gap {100 * summary['gap_to_paper']:+.2f} points)",
            )
        )
    width = max(len(label) for label, _, _ in rows)
    lines = [f"  {label:<{width}}  {value}  {note}".rstrip() for label, value, note in rows]
    if summary.get("feature_kernel_error") is not None:
        lines.append(
            f"  features vs the exact {estimated} at the start: relative error "
            f"{summary['feature_kernel_error']:.3f}"
        )
    preset = ""
    if summary.get("preset"):
        given = ", ".join(summary["preset_overrides"]) or "none"
        preset = f"preset {summary['preset']} (overridden: {given})\n"
    return (
        f"\n{summary['dataset']}: {summary['support_size']} support images, kernel "
        f"{summary['kernel']}, "
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


def format_evaluation(result: dict[str, Any]) -> str:
    """``kipd evaluate``: the test accuracy (and the natural init's, for a run)."""
    lines = [
        f"{result['dataset']}: {result['support_size']} support images, kernel {result['kernel']}"
        + (f" ({result['get']})" if result.get("get", "ntk") != "ntk" else "")
    ]
    if result.get("init_test_accuracy") is not None:
        lines.append(f"  natural init test accuracy  {_percent(result['init_test_accuracy'])}")
    lines.append(f"  test accuracy               {_percent(result['test_accuracy'])}")
    return "\n".join(lines)


def format_plan(plan: dict[str, Any]) -> str:
    """``kipd distill --plan``: per kernel the blocks and their measured times, then the
    time per step and in all on 1 and N workers, and the memory per worker."""
    n = plan["workers"]
    lines = [
        f"{plan['dataset']}: {plan['support_size']} support images, {plan['target_batch_size']} "
        f"targets per step, {plan['steps']} steps, executor {plan['executor']} (this "
        f"process: {plan['devices']})"
    ]
    for k in plan["kernels"]:
        lines.append(
            f"kernel {k['kernel']}: {k['blocks']} blocks of {k['target_block']}x{k['block_size']} "
            f"images per pass; {k['entries_forward']:,} kernel entries forward and "
            f"{k['entries_vjp']:,} in the VJP per step\n"
            f"  measured here: forward block {k['forward_seconds']['ts']:.3g} s, VJP block "
            f"{k['vjp_seconds']['ts']:.3g} s, server {k['server_seconds']:.2g} s, compile "
            f"{k['compile_seconds']:.1f} s per worker"
        )
    rows: list[tuple[str, ...]] = [
        ("", "1 worker", f"{n} workers"),
        (
            "per step",
            compute.format_duration(plan["step_seconds"]),
            compute.format_duration(plan["step_seconds_workers"]),
        ),
        (
            "whole run",
            compute.format_duration(plan["run_seconds"]),
            compute.format_duration(plan["run_seconds_workers"]),
        ),
    ]
    if "features" in plan:
        f = plan["features"]
        lines.append(
            f"features {f['features']}: {f['feature_count']:,} per image; measured here: "
            f"{1000 * f['forward_seconds_per_image']:.3g} ms per image forward, "
            f"{1000 * f['gradient_seconds_per_image']:.3g} ms with the gradient"
        )
    lines += [f"  {label:<10} {one:>12} {many:>12}" for label, one, many in rows]
    if plan["zca_fit_seconds"] > 0:
        lines.append(
            f"  whole run includes the ZCA fit: "
            f"{compute.format_duration(plan['zca_fit_seconds'])} (once; --no-zca skips it)"
        )
    if "peak_bytes_per_worker" in plan:  # runs on features have no block plan
        lines.append(
            f"  block overhead {1000 * plan['overhead_seconds_per_block']:.2f} ms; peak memory "
            f"per worker {plan['peak_bytes_per_worker'] / 2**20:,.0f} MiB of "
            f"{plan['memory_limit_bytes'] / 2**30:.0f} GiB"
        )
    lines += [f"warning: {warning}" for warning in plan["warnings"]]
    return "\n".join(lines)


def format_export(result: dict[str, Any]) -> str:
    """``kipd export``: the files written and their sizes."""
    files = ", ".join(f"{name} ({_size(size)})" for name, size in result["bytes"].items())
    return f"exported to {result['export']}: {files}; {_size(sum(result['bytes'].values()))} in all"


def _size(size: int) -> str:
    """Bytes as a reader takes them in: ``812 B``, ``4.1 KB``, ``1.2 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
